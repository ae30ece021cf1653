package lazy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	digest "github.com/opencontainers/go-digest"
	"github.com/stratafs/strata/layer"
)

// Sentinel errors, tested with errors.Is; they arrive wrapped with the layer
// and the place concerned.
var (
	// ErrFormat: the blob has no eStargz or zstd:chunked footer naming a TOC
	// inside it.
	ErrFormat = errors.New("lazy: not an eStargz or zstd:chunked blob")
	// ErrTOCDigest: the TOC does not match the digest the manifest gives.
	ErrTOCDigest = errors.New("lazy: TOC digest mismatch")
	// ErrInvalidTOC: the TOC matches its digest but describes no possible
	// tar (bad names, overlapping or out-of-range chunks, ...).
	ErrInvalidTOC = errors.New("lazy: invalid TOC")
	// ErrChunkDigest: a chunk's bytes do not match its digest in the TOC.
	ErrChunkDigest = errors.New("lazy: chunk digest mismatch")
)

// Blob is random access to a layer blob (compressed, as the registry stores
// it). lazy/remote provides one over HTTP Range requests. ReadAt follows
// io.ReaderAt's contract and may be called concurrently.
type Blob interface {
	ReadAt(ctx context.Context, p []byte, off int64) (int, error)
	Size() int64
}

// Layer is an eStargz or zstd:chunked layer whose tree is known from its TOC
// and whose file bytes are fetched from the blob when first read.
type Layer struct {
	name       string
	blob       Blob
	format     *format
	idx        *index
	data       countingBlob // blob, counting the reads made for chunk data
	store      ChunkStore
	files      FileStore     // nil: files are never kept whole
	assembling chan struct{} // holds a token while a file is assembled
	maxChunk   int64
	stats      layerStats

	window    int64         // compressed bytes one fetch may cover; 0: one chunk
	windowRaw int64         // and its most decompressed bytes; 0: any
	aheadMax  int64         // the read-ahead window of a long sequential read
	aheadRaw  int64         // and its most decompressed bytes; 0: any
	slots     chan struct{} // read-ahead windows in flight; nil: no read-ahead
	bg        *background
	demand    *demand      // shared by the layers of an image
	auto      atomic.Bool  // PrefetchAuto: the whole layer once readers fetched enough
	demanded  atomic.Int64 // compressed bytes fetched for readers
	autoOnce  sync.Once
	scanAt    atomic.Int64 // when a scan last showed, Unix nanoseconds; 0: never (see noteDemand, Scanning)
	// autoQuiet and autoWait are the package's constants, but for tests.
	autoQuiet, autoWait time.Duration

	// lastDemand is where the last window readers fetched ended in the
	// blob, lastSpans whether it held chunks of more than one file, and
	// demandRun how many such windows in a row each started at about the
	// end of the one before, in another file (a scan: see scanRun).
	lastDemand, demandRun atomic.Int64
	lastSpans             atomic.Bool

	recording bool            // WithRecord: keep accessed
	recMu     sync.Mutex      // guards accessed and seen
	accessed  []string        // paths read, in the order of their first read
	seen      map[string]bool // the paths in accessed

	mu    sync.Mutex         // guards calls and bad
	calls map[chunkKey]*call // chunks being fetched: one fetch per chunk at a time
	bad   map[chunkKey]bool  // chunks whose bytes did not verify (until one does)
}

var _ layer.Layer = (*Layer)(nil)

// Open reads the blob's footer and TOC, verifies the TOC against tocDigest
// (the manifest's containerd.io/snapshot/stargz/toc.digest annotation, or for
// zstd:chunked its io.github.containers.zstd-chunked.manifest-checksum) and
// builds the layer's tree. ctx bounds only these reads.
func Open(ctx context.Context, blob Blob, tocDigest digest.Digest, opts ...Option) (*Layer, error) {
	var o options
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	o.setDefaults()
	if o.name == "" {
		o.name = tocDigest.String()
	}
	if err := tocDigest.Validate(); err != nil {
		return nil, fmt.Errorf("lazy %s: TOC digest: %w", o.name, err)
	}
	if blob.Size() < 0 {
		return nil, fmt.Errorf("lazy %s: blob size %d", o.name, blob.Size())
	}
	t, err := loadTOC(ctx, blob, tocDigest, &o)
	if err != nil {
		return nil, fmt.Errorf("lazy %s: %w", o.name, err)
	}
	idx, err := buildIndex(t, &o)
	if err != nil {
		return nil, fmt.Errorf("lazy %s: %w", o.name, err)
	}
	l := &Layer{name: o.name, blob: blob, format: t.f, idx: idx, store: o.store, maxChunk: o.maxChunkSize,
		window: o.fetchWindow, windowRaw: o.windowRaw, aheadMax: o.aheadWindow, aheadRaw: o.aheadRaw,
		autoQuiet: autoQuiet, autoWait: autoWait,
		bg: newBackground(), demand: o.demand, calls: map[chunkKey]*call{}, bad: map[chunkKey]bool{},
		files: o.files, assembling: make(chan struct{}, 1), recording: o.record}
	l.data = countingBlob{blob, &l.stats.requests}
	if o.readAhead > 0 {
		l.slots = make(chan struct{}, o.readAhead)
	}
	return l, nil
}

func (l *Layer) String() string { return l.name }

// Format names the blob's format: "estargz", "estargz (legacy footer)" or
// "zstd:chunked".
func (l *Layer) Format() string { return l.format.name }

// HasXattrs reports whether any entry of the layer carries an extended
// attribute (overlay bookkeeping aside). A union over layers that have
// none can tell the kernel so once, rather than answer every lookup's
// getxattr (see package unionfs).
func (l *Layer) HasXattrs() bool { return l.idx.xattrs }

// Root describes the root directory.
func (l *Layer) Root(ctx context.Context) (layer.Entry, error) {
	return l.idx.nodes[""].e, nil
}

// ReadDir lists the directory at p: visible entries and whiteouts, sorted
// by name. A name both present and whited out in this layer is present.
// The entries' Xattrs maps belong to the layer: callers only read them.
func (l *Layer) ReadDir(ctx context.Context, p string) (layer.Dir, error) {
	n, err := l.lookup(p)
	if err != nil {
		return layer.Dir{}, err
	}
	if n.e.Type != layer.TypeDir {
		return layer.Dir{}, fmt.Errorf("lazy %s: %q: %w", l.name, p, layer.ErrNotDir)
	}
	d := layer.Dir{Opaque: n.opaque, Entries: make([]layer.Entry, 0, len(n.kids)+len(n.white))}
	for _, k := range n.kids {
		d.Entries = append(d.Entries, k.e)
	}
	for _, w := range n.white {
		if _, found := d.Find(w); !found {
			d.Entries = append(d.Entries, layer.Entry{Name: w, Type: layer.TypeWhiteout})
		}
	}
	if len(n.white) > 0 {
		slices.SortFunc(d.Entries, func(a, b layer.Entry) int { return strings.Compare(a.Name, b.Name) })
	}
	return d, nil
}

// lookup finds the node at p, telling a missing name from a path through a
// non-directory as a filesystem would.
func (l *Layer) lookup(p string) (*node, error) {
	if !layer.ValidPath(p) {
		return nil, fmt.Errorf("lazy %s: %q: %w", l.name, p, layer.ErrInvalidPath)
	}
	if n, ok := l.idx.nodes[p]; ok {
		return n, nil
	}
	for q := p; q != ""; {
		q = parentPath(q)
		if n, ok := l.idx.nodes[q]; ok {
			if n.e.Type != layer.TypeDir {
				return nil, fmt.Errorf("lazy %s: %q: %w", l.name, p, layer.ErrNotDir)
			}
			break
		}
	}
	return nil, fmt.Errorf("lazy %s: %q: %w", l.name, p, layer.ErrNotExist)
}

// Open opens the regular file at p. Nothing is fetched until it is read.
// With a FileStore (WithFileStore) that holds the file whole, the result is
// that file, an *os.File.
func (l *Layer) Open(ctx context.Context, p string) (layer.Content, error) {
	n, err := l.lookup(p)
	if err != nil {
		return nil, err
	}
	if n.e.Type != layer.TypeReg {
		return nil, fmt.Errorf("lazy %s: open %q: not a regular file", l.name, p)
	}
	if f, ok := l.openWhole(n.file); ok {
		l.record(p)
		return f, nil
	}
	return &Content{l: l, path: p, f: n.file}, nil
}

// record notes that the file at p was read, if the layer records.
func (l *Layer) record(p string) {
	if !l.recording {
		return
	}
	l.recMu.Lock()
	defer l.recMu.Unlock()
	if l.seen == nil {
		l.seen = map[string]bool{}
	}
	if !l.seen[p] {
		l.seen[p] = true
		l.accessed = append(l.accessed, p)
	}
}

// Accessed returns the paths of the files read so far, in the order of
// their first read (with WithRecord; nothing without): what a container
// start needed, for `strata convert --prioritize` to put first.
func (l *Layer) Accessed() []string {
	l.recMu.Lock()
	defer l.recMu.Unlock()
	return slices.Clone(l.accessed)
}

// Links returns every path of the layer that names the hard-linked file with
// the given ID (nothing for a file with one name).
func (l *Layer) Links(ctx context.Context, id uint64) ([]string, error) {
	return slices.Clone(l.idx.links[id]), nil
}

// Content is an open regular file of a Layer.
type Content struct {
	l        *Layer
	path     string
	f        *fileData
	closed   atomic.Bool
	last     atomic.Int64 // where the last read ended
	run      atomic.Int64 // bytes read in sequence up to last (see sequential)
	recorded atomic.Bool  // the layer has this file among those read
	ahead    atomic.Int64 // read-ahead found the chunks below this offset stored or under way
}

var _ layer.Content = (*Content)(nil)

// ReadAt reads with context.Background(): io.ReaderAt has no context, and
// the one given to Open belongs to the open(2) that asked for it. Callers
// that can cancel a read use ReadAtContext.
func (c *Content) ReadAt(p []byte, off int64) (int, error) {
	return c.ReadAtContext(context.Background(), p, off)
}

// ReadAtContext reads len(p) bytes at off, fetching and verifying the chunks
// that hold them, and follows io.ReaderAt's contract. Every byte returned has
// been checked against its chunk's digest.
func (c *Content) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	if c.closed.Load() {
		return 0, os.ErrClosed
	}
	if off < 0 {
		return 0, fmt.Errorf("lazy %s: read %q at %d: negative offset", c.l.name, c.path, off)
	}
	if c.l.recording && c.recorded.CompareAndSwap(false, true) {
		c.l.record(c.path)
	}
	start, n := off, 0
	for n < len(p) && off < c.f.size {
		ch := c.f.find(off)
		data, err := c.l.chunk(ctx, ch)
		if err != nil {
			return n, fmt.Errorf("lazy %s: read %q at %d: %w", c.l.name, c.path, off, err)
		}
		k := copy(p[n:], data[off-ch.off:])
		n += k
		off += int64(k)
	}
	c.l.stats.served.Add(int64(n))
	c.sequential(start, off)
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Close ends the use of c; later reads fail. A file whose chunks are all
// stored by then (read in full, by this reader or others) is kept whole, if
// the layer has a FileStore.
func (c *Content) Close() error {
	if !c.closed.Swap(true) {
		c.l.assemble(c.f)
	}
	return nil
}

// chunk returns a chunk's verified bytes from the store, from a fetch
// under way, or from a window this reader fetches. The result is shared:
// callers only copy from it.
func (l *Layer) chunk(ctx context.Context, c *chunk) ([]byte, error) {
	if data, ok := l.stored(c); ok {
		l.stats.hits.Add(1)
		return data, nil
	}
	l.demand.begin()
	defer l.demand.end()
	for attempt := 0; ; attempt++ {
		data, cl, w := l.claim(c)
		switch {
		case data != nil:
			l.stats.hits.Add(1)
			return data, nil
		case w != nil:
			l.noteDemand(w, true)
			l.fetch(ctx, w, false)
			if err := l.await(ctx, cl); err != nil {
				return nil, err
			}
		default:
			l.stats.waits.Add(1)
			if err := l.await(ctx, cl); err != nil {
				return nil, err
			}
		}
		if cl.err == nil {
			return cl.data, nil
		}
		// A fetch ended by another reader's context or by Close is no
		// verdict on the chunk: fetch it on this reader's own.
		if !canceled(cl.err) || ctx.Err() != nil || attempt >= maxRefetch {
			return nil, cl.err
		}
	}
}

// maxRefetch bounds how often a reader takes over fetches that others'
// contexts ended.
const maxRefetch = 3
