package lazy

import (
	"errors"

	"github.com/containerd/stargz-snapshotter/estargz"
)

// A layer's tree is built from its TOC in two stages, decoding the JSON
// and adding each entry to the tree, about equal in cost. For a big TOC
// they run on two goroutines, the decoder handing the builder batches of
// entries, so that opening the layer takes the longer of the two rather
// than their sum: the base layer of an image is the last one a mount
// waits for. A small TOC is not worth the goroutine.

// pipelineMin is the TOC JSON size from which decoding and building
// overlap: a Debian base layer's is 2 MB, an application layer's often
// a few KB.
const pipelineMin = 256 << 10

// batchLen is how many entries travel together from the decoder to the
// builder: few enough hand-offs, and three batches in flight stay small
// (entries are about 300 bytes).
const batchLen = 256

// errBuilderStopped is how the decoder learns that the builder has failed
// and wants no more entries.
var errBuilderStopped = errors.New("builder stopped")

// decodeInto runs decodeTOC(data, limit, add) with the decoding on a
// goroutine of its own and add on the caller's, in the TOC's order, and
// returns the first error of either.
func decodeInto(data []byte, limit int, add func(i int, te *estargz.TOCEntry) error) error {
	type batch struct {
		first   int // the index of entries[0] in the TOC
		entries []estargz.TOCEntry
	}
	full := make(chan batch, 2)
	free := make(chan []estargz.TOCEntry, 3)
	for range cap(free) {
		free <- make([]estargz.TOCEntry, 0, batchLen)
	}
	stop := make(chan struct{})
	decoded := make(chan error, 1)
	go func() {
		defer close(full)
		cur := batch{entries: <-free}
		decoded <- decodeTOC(data, limit, func(i int, te *estargz.TOCEntry) error {
			if len(cur.entries) == 0 {
				cur.first = i
			}
			cur.entries = append(cur.entries, *te)
			if len(cur.entries) < batchLen {
				return nil
			}
			select {
			case full <- cur:
			case <-stop:
				return errBuilderStopped
			}
			select {
			case cur.entries = <-free:
			case <-stop:
				return errBuilderStopped
			}
			return nil
		})
		if len(cur.entries) > 0 {
			select {
			case full <- cur:
			case <-stop:
			}
		}
	}()
	var err error
	for b := range full {
		for i := range b.entries {
			if err == nil {
				err = add(b.first+i, &b.entries[i])
			}
			b.entries[i] = estargz.TOCEntry{} // drop what it holds for the collector
		}
		if err != nil {
			close(stop)
			for range full { // let the decoder return
			}
			break
		}
		free <- b.entries[:0]
	}
	if derr := <-decoded; err == nil && !errors.Is(derr, errBuilderStopped) {
		err = derr
	}
	return err
}
