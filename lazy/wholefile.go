package lazy

import (
	"context"
	"io"
	"os"

	digest "github.com/opencontainers/go-digest"
)

// FileStore keeps whole files by the digest of their bytes (the package
// cache provides one on disk). A file whose bytes are all there opens as a
// local *os.File, which a FUSE server can hand to the kernel for
// passthrough reads; a file read in full is assembled into one, in the
// background, from its verified chunks.
type FileStore interface {
	// OpenFile returns the file with digest d, its bytes verified.
	OpenFile(d digest.Digest) (*os.File, bool)
	// HasFile tells whether the file is stored, without reading it.
	HasFile(d digest.Digest) bool
	// PutFile stores the size bytes fill writes, if they hash to d.
	PutFile(d digest.Digest, size int64, fill func(w io.Writer) error) error
}

// WholeFileMin is the smallest file kept whole in a FileStore. Below it a
// file is a chunk or two, served from the chunk store as fast as a whole
// file would be, and package unionfs does not pass it through.
const WholeFileMin = 64 << 10

// wantsWhole reports whether f is kept whole.
func (l *Layer) wantsWhole(f *fileData) bool {
	return l.files != nil && f.digest != "" && f.size >= WholeFileMin
}

// openWhole returns the stored whole file of f, if there is one.
func (l *Layer) openWhole(f *fileData) (*os.File, bool) {
	if !l.wantsWhole(f) {
		return nil, false
	}
	file, ok := l.files.OpenFile(f.digest)
	if ok {
		l.stats.wholeOpens.Add(1)
	}
	return file, ok
}

// assemble stores f whole, in the background, when every chunk of it is in
// the chunk store and the file is not stored yet: its readers have read it
// all, or the prefetch has. The check stops at the first chunk missing, so
// a file read only in part costs a lookup or two. Layers assemble one file
// at a time.
func (l *Layer) assemble(f *fileData) {
	if !l.wantsWhole(f) || l.files.HasFile(f.digest) {
		return
	}
	for i := range f.chunks {
		if !l.has(&f.chunks[i]) {
			return
		}
	}
	select {
	case l.assembling <- struct{}{}:
	default:
		return // one under way; a later close of the file tries again
	}
	if !l.bg.spawn(func(ctx context.Context) {
		defer func() { <-l.assembling }()
		l.putWhole(ctx, f)
	}) {
		<-l.assembling
	}
}

// putWhole writes f's chunks, in order, into the file store, which checks
// the result against the file's digest.
func (l *Layer) putWhole(ctx context.Context, f *fileData) {
	err := l.files.PutFile(f.digest, f.size, func(w io.Writer) error {
		for i := range f.chunks {
			data, err := l.chunk(ctx, &f.chunks[i])
			if err != nil {
				return err
			}
			if _, err := w.Write(data); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		l.stats.wholePuts.Add(1)
	} else if !canceled(err) {
		l.stats.failed(err)
	}
}
