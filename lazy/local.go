package lazy

import (
	"time"

	"github.com/stratafs/strata/layer"
)

// A walk that reads every file of a layer (a scan: see noteDemand) lists
// each directory and then reads its files, one READ round trip each, after
// the whole-layer prefetch it set off has made most of them local. A
// server that sees the listing can hand the kernel those files' bytes
// ahead of the reads (package unionfs does, on its open-less mounts and in
// its union for files not opened yet), which turns the READs into
// page-cache hits. Scanning says when that is worth doing, and ReadLocal
// gives the bytes without ever fetching.

// scanLinger is how long a layer counts as scanned after the last sign of
// it: a scan's step, or a window of the whole-layer prefetch that a scan
// set off. Past the prefetch, a walk reads what it stored for as long as
// the page cache and strata take, about a second per 7,000 small files
// here.
const scanLinger = 10 * time.Second

// Scanning reports whether readers have been scanning the layer within
// scanLinger. A recording layer (WithRecord) never says so: it must see
// every file read, and a file handed to the page cache is read from there.
func (l *Layer) Scanning() bool {
	if l.recording {
		return false
	}
	at := l.scanAt.Load()
	return at != 0 && time.Since(time.Unix(0, at)) < scanLinger
}

// sawScan notes a sign of a scan now.
func (l *Layer) sawScan() { l.scanAt.Store(time.Now().UnixNano()) }

// scanned reports whether readers have ever scanned the layer.
func (l *Layer) scanned() bool { return l.scanAt.Load() != 0 }

// ReadLocal returns the bytes of the regular file at p, whole, when it is
// not empty, at most max bytes long and every chunk of it is stored; else
// false. It never fetches. The bytes are verified as every read's are: the
// chunk store checks a chunk against its digest when it reads it.
func (l *Layer) ReadLocal(p string, max int64) ([]byte, bool) {
	n, err := l.lookup(p)
	if err != nil || n.e.Type != layer.TypeReg || n.file == nil {
		return nil, false
	}
	f := n.file
	if f.size <= 0 || f.size > max {
		return nil, false
	}
	out := make([]byte, f.size)
	var filled int64
	for i := range f.chunks {
		c := &f.chunks[i]
		if c.off != filled || c.off+c.size > f.size {
			return nil, false // the index never builds such a file; refuse rather than guess
		}
		data, ok := l.stored(c)
		if !ok {
			return nil, false
		}
		filled += int64(copy(out[c.off:], data))
	}
	if filled != f.size {
		return nil, false
	}
	l.stats.fed.Add(f.size)
	return out, true
}
