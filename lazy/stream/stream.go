package stream

import (
	"context"
	_ "crypto/sha256" // digest.Digest.Verifier needs the hash linked in
	_ "crypto/sha512"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	digest "github.com/opencontainers/go-digest"
	"github.com/stratafs/strata/layer"
)

// Sentinel errors, tested with errors.Is; they arrive wrapped with the layer
// and the cause.
var (
	// ErrStream: reading, decompressing or parsing the blob failed (a
	// network error, a corrupt gzip or zstd stream, a bad tar entry).
	ErrStream = errors.New("stream: layer stream failed")
	// ErrDigest: the uncompressed stream does not match the diffID, or the
	// blob does not match its digest.
	ErrDigest = errors.New("stream: layer digest mismatch")
	// ErrOrder: with WithWalkOrder, the tar changed a directory after its
	// listing was answered. It arrives together with ErrStream.
	ErrOrder = errors.New("stream: tar is not in walk order")
	// ErrMediaType: the media type is not a plain tar, gzip or zstd layer.
	ErrMediaType = errors.New("stream: unsupported media type")
	// ErrClosed: the layer was closed.
	ErrClosed = errors.New("stream: layer closed")
)

// Blob is random access to a layer blob (compressed, as the registry stores
// it); lazy/remote provides one. ReadAt follows io.ReaderAt's contract.
type Blob interface {
	ReadAt(ctx context.Context, p []byte, off int64) (int, error)
	Size() int64
}

// Layer is a plain tar, gzip or zstd layer indexed while it streams.
type Layer struct {
	name     string
	blob     Blob
	comp     compression
	diffID   digest.Digest
	o        options
	spool    *os.File // unlinked; written only by the stream goroutine
	cancel   context.CancelFunc
	stopped  chan struct{} // closed when the stream goroutine returns
	read     atomic.Int64  // compressed bytes read from the blob
	closeOne sync.Once

	mu      sync.Mutex // guards everything below
	t       tree
	cur     string // path of the latest tar header the stream has reached
	started bool   // the first entry is indexed, or the stream ended
	done    bool   // the whole tar is indexed and verified
	err     error  // why the layer failed; final once set
	wake    chan struct{}
	watched bool // someone waits on wake
}

var _ layer.Layer = (*Layer)(nil)

// Open starts streaming blob in the background and returns at once. diffID
// ("" for none) is the digest of the uncompressed tar, checked at the end of
// the stream. ctx bounds only Open itself; the stream runs until it ends or
// Close is called.
func Open(ctx context.Context, blob Blob, mediaType string, diffID digest.Digest, opts ...Option) (*Layer, error) {
	var o options
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	o.setDefaults()
	comp, ok := mediaTypes[mediaType]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrMediaType, mediaType)
	}
	if diffID != "" {
		if err := diffID.Validate(); err != nil {
			return nil, fmt.Errorf("stream: diffID: %w", err)
		}
	}
	if blob == nil || blob.Size() < 0 {
		return nil, fmt.Errorf("stream: no blob, or a negative size")
	}
	l := &Layer{name: layerName(&o, diffID, mediaType), blob: blob, comp: comp, diffID: diffID, o: o}
	spool, err := openSpool(o.spoolDir)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", l.name, err)
	}
	l.spool, l.t, l.wake, l.stopped = spool, newTree(o.maxEntries), make(chan struct{}), make(chan struct{})
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	l.cancel = cancel
	go l.run(sctx)
	return l, nil
}

func layerName(o *options, diffID digest.Digest, mediaType string) string {
	switch {
	case o.name != "":
		return o.name
	case diffID != "":
		return diffID.String()
	case o.blobDigest != "":
		return o.blobDigest.String()
	}
	return mediaType
}

// openSpool creates the spool file and unlinks it at once: its bytes live
// as long as the descriptor, and a crash leaves nothing behind.
func openSpool(dir string) (*os.File, error) {
	f, err := os.CreateTemp(dir, "strata-stream-*")
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, fmt.Errorf("spool: %w", err)
	}
	return f, nil
}

func (l *Layer) String() string { return l.name }

// Progress reports how far the stream is: compressed bytes read of the
// blob's total, and whether the whole tar is indexed and verified.
func (l *Layer) Progress() (bytesRead, total int64, done bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.read.Load(), l.blob.Size(), l.done
}

// Err returns why the layer failed, or nil.
func (l *Layer) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Close stops the stream, waits for its goroutine and releases the spool.
// Later calls on the layer or its open files fail with ErrClosed.
func (l *Layer) Close() error {
	var err error
	l.closeOne.Do(func() {
		l.cancel()
		<-l.stopped
		l.mu.Lock()
		l.err = ErrClosed
		l.notifyLocked()
		l.mu.Unlock()
		err = l.spool.Close()
	})
	return err
}

// waitLocked waits, with l.mu held (released while asleep), until ready
// reports true, the stream ends or fails, or ctx ends.
func (l *Layer) waitLocked(ctx context.Context, ready func() bool) error {
	for {
		if l.err != nil {
			return l.err
		}
		if l.done || ready() {
			return nil
		}
		ch := l.wake
		l.watched = true
		l.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
		}
		l.mu.Lock()
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// notifyLocked wakes every waiter; they re-check their condition.
func (l *Layer) notifyLocked() {
	if l.watched {
		close(l.wake)
		l.wake = make(chan struct{})
		l.watched = false
	}
}

// passedLocked reports, in walk order, that the stream has left the
// directory dir for good, so that its listing is complete. The root is
// left only at the end.
func (l *Layer) passedLocked(dir string) bool {
	return l.o.walkOrder && dir != "" && l.cur != dir && !strings.HasPrefix(l.cur, dir+"/")
}

// Root describes the root directory, once the first entry is indexed (it
// is usually the root's own entry, "./").
func (l *Layer) Root(ctx context.Context) (layer.Entry, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.waitLocked(ctx, func() bool { return l.started }); err != nil {
		return layer.Entry{}, fmt.Errorf("stream %s: root: %w", l.name, err)
	}
	return l.t.entry(l.t.root), nil
}

// ReadDir lists the directory at p: at the end of the stream, or in walk
// order as soon as the stream has left it. The entries' Xattrs maps belong
// to the layer: callers only read them.
func (l *Layer) ReadDir(ctx context.Context, p string) (layer.Dir, error) {
	if !layer.ValidPath(p) {
		return layer.Dir{}, fmt.Errorf("stream %s: %q: %w", l.name, p, layer.ErrInvalidPath)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	ready := func() bool {
		_, at, _ := l.t.lookup(p)
		return l.passedLocked(at)
	}
	if err := l.waitLocked(ctx, ready); err != nil {
		return layer.Dir{}, fmt.Errorf("stream %s: %q: %w", l.name, p, err)
	}
	n, at, err := l.t.lookup(p)
	l.markListedLocked(at)
	if err != nil {
		return layer.Dir{}, fmt.Errorf("stream %s: %q: %w", l.name, p, err)
	}
	if n.e.Type != layer.TypeDir {
		return layer.Dir{}, fmt.Errorf("stream %s: %q: %w", l.name, p, layer.ErrNotDir)
	}
	return l.t.list(n), nil
}

// markListedLocked remembers that an answer before the end relied on the
// directory at being complete.
func (l *Layer) markListedLocked(at string) {
	if !l.done {
		if d := l.t.find(at); d != nil && d.e.Type == layer.TypeDir {
			d.listed = true
		}
	}
}

// Open opens the regular file at p once the stream has passed it (its
// bytes are all in the spool). A path the stream has not reached waits; one
// still missing at the end is layer.ErrNotExist.
func (l *Layer) Open(ctx context.Context, p string) (layer.Content, error) {
	if !layer.ValidPath(p) {
		return nil, fmt.Errorf("stream %s: %q: %w", l.name, p, layer.ErrInvalidPath)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	ready := func() bool {
		n, at, _ := l.t.lookup(p)
		return n != nil || l.passedLocked(at)
	}
	if err := l.waitLocked(ctx, ready); err != nil {
		return nil, fmt.Errorf("stream %s: open %q: %w", l.name, p, err)
	}
	n, at, err := l.t.lookup(p)
	if err != nil {
		l.markListedLocked(at)
		return nil, fmt.Errorf("stream %s: open %q: %w", l.name, p, err)
	}
	if n.e.Type != layer.TypeReg {
		return nil, fmt.Errorf("stream %s: open %q: not a regular file", l.name, p)
	}
	return &Content{l: l, path: p, f: *n.file}, nil
}

// Links returns every path of the layer that names the hard-linked file
// with the given ID (nothing for a file with one name). It waits for the
// end of the stream, since a link may come last.
func (l *Layer) Links(ctx context.Context, id uint64) ([]string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.waitLocked(ctx, func() bool { return false }); err != nil {
		return nil, fmt.Errorf("stream %s: links: %w", l.name, err)
	}
	ps := l.t.links[id]
	if len(ps) < 2 {
		return nil, nil
	}
	ps = slices.Clone(ps)
	slices.Sort(ps)
	return ps, nil
}

// failure returns the layer's error, checked before every read.
func (l *Layer) failure() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}
