package lazy

import "fmt"

// Option configures Open.
type Option func(*options) error

type options struct {
	name         string
	maxEntries   int
	maxTOCSize   int64
	maxChunkSize int64
	cacheSize    int64
	store        ChunkStore
	files        FileStore
	record       bool
	fetchWindow  int64 // 0: one chunk per fetch, no read-ahead
	readAhead    int   // read-ahead windows in flight per layer; 0: none
	windowRaw    int64 // a fetch window's most decompressed bytes; 0: any
	aheadWindow  int64 // read-ahead window of a long sequential read
	aheadRaw     int64 // its most decompressed bytes; 0: any
	windowSet    bool  // fetchWindow was given, even as 0
	readAheadSet bool  // readAhead was given, even as 0
	demand       *demand
	tocOffset    int64 // where the manifest says the TOC starts; 0: it does not say
}

// Defaults. A TOC entry costs a few hundred bytes of memory once parsed, so
// the entry limit is what bounds a layer's memory; the size limits bound
// what a lying footer or chunk can make strata allocate.
const (
	DefaultMaxEntries   = 10_000_000
	DefaultMaxTOCSize   = 1 << 30  // uncompressed TOC JSON, and its compressed form
	DefaultMaxChunkSize = 64 << 20 // estargz writes 4 MiB chunks by default
	DefaultCacheSize    = 64 << 20
	// DefaultFetchWindow is how many compressed bytes one fetch may cover:
	// a registry round trip costs about as much as a few MiB at link speed,
	// so a read that must wait anyway takes the chunks after its own.
	DefaultFetchWindow = 4 << 20
	// DefaultReadAhead is how many read-ahead windows one layer keeps in
	// flight: two keep a sequential reader ahead of the network without
	// filling the chunk store with bytes nobody asked for yet.
	DefaultReadAhead = 2
	// maxFetchWindow bounds WithFetchWindow, since a window is read into
	// memory whole before its chunks are decompressed.
	maxFetchWindow = 1 << 30
)

func (o *options) setDefaults() {
	if o.maxEntries == 0 {
		o.maxEntries = DefaultMaxEntries
	}
	if o.maxTOCSize == 0 {
		o.maxTOCSize = DefaultMaxTOCSize
	}
	if o.maxChunkSize == 0 {
		o.maxChunkSize = DefaultMaxChunkSize
	}
	if o.cacheSize == 0 {
		o.cacheSize = DefaultCacheSize
	}
	if o.store == nil {
		o.store = NewMemoryStore(o.cacheSize)
	}
	if !o.windowSet {
		o.fetchWindow = DefaultFetchWindow
	}
	// A long sequential read gets read-ahead windows twice as large (8 MiB
	// by default, the size of the pooled window buffers).
	o.aheadWindow = 2 * o.fetchWindow
	// In a store of memory alone, what a window fetches must stay there
	// until it is read: a reader's window and the read-ahead in front of
	// it must not evict each other. Windows are bounded in compressed bytes
	// (a sixteenth of the store; 64 MiB gives DefaultFetchWindow) and in
	// what they hold decompressed (an eighth), since text decompresses to
	// 8-10 times its size; the larger read-ahead windows to twice that.
	// Read-ahead runs at most its slots' windows ahead of the reader, so
	// a reader's window, the chunks stored ahead of it and the windows
	// under way stay within the store.
	if ms, ok := o.store.(*MemoryStore); ok {
		o.fetchWindow = min(o.fetchWindow, ms.max/16)
		o.windowRaw = ms.max / 8
		o.aheadWindow = min(o.aheadWindow, ms.max/8)
		o.aheadRaw = ms.max / 4
	}
	if o.demand == nil {
		o.demand = newDemand()
	}
	if !o.readAheadSet {
		o.readAhead = DefaultReadAhead
	}
	if o.fetchWindow == 0 {
		o.readAhead = 0 // read-ahead fetches windows: with none, there is none
	}
}

// withTOCOffset tells Open where the layer's manifest says its TOC starts
// (zstd:chunked's manifest-position annotation), so that it reads the TOC
// and the footer in one request instead of the footer first.
func withTOCOffset(off int64) Option {
	return func(o *options) error {
		o.tocOffset = off
		return nil
	}
}

// WithName sets the name the layer gives in errors and String (default: the
// TOC digest).
func WithName(name string) Option {
	return func(o *options) error {
		o.name = name
		return nil
	}
}

// WithMaxEntries refuses a TOC with more than n entries, counting implied
// directories (default DefaultMaxEntries).
func WithMaxEntries(n int) Option {
	return func(o *options) error {
		if n <= 0 {
			return fmt.Errorf("lazy: max entries %d must be positive", n)
		}
		o.maxEntries = n
		return nil
	}
}

// WithMaxTOCSize refuses a TOC larger than n bytes, compressed or not
// (default DefaultMaxTOCSize).
func WithMaxTOCSize(n int64) Option {
	return func(o *options) error {
		if n <= 0 {
			return fmt.Errorf("lazy: max TOC size %d must be positive", n)
		}
		o.maxTOCSize = n
		return nil
	}
}

// WithMaxChunkSize refuses a TOC with a chunk of more than n uncompressed
// bytes, since a chunk is held in memory whole while it is verified (default
// DefaultMaxChunkSize).
func WithMaxChunkSize(n int64) Option {
	return func(o *options) error {
		if n <= 0 {
			return fmt.Errorf("lazy: max chunk size %d must be positive", n)
		}
		o.maxChunkSize = n
		return nil
	}
}

// WithCacheSize sets the byte capacity of the default in-memory chunk store
// (default DefaultCacheSize). It has no effect with WithChunkStore.
func WithCacheSize(n int64) Option {
	return func(o *options) error {
		if n <= 0 {
			return fmt.Errorf("lazy: cache size %d must be positive", n)
		}
		o.cacheSize = n
		return nil
	}
}

// WithChunkStore keeps verified chunks in s instead of a private in-memory
// store; several layers may share one store, since chunks are keyed by digest.
func WithChunkStore(s ChunkStore) Option {
	return func(o *options) error {
		if s == nil {
			return fmt.Errorf("lazy: nil chunk store")
		}
		o.store = s
		return nil
	}
}

// WithFetchWindow lets one fetch cover up to n compressed bytes of the blob:
// with the chunk a read needs, it takes the chunks that follow it in the
// blob (the rest of the same file first, then the files after it) that are
// neither in the store nor being fetched, in one Blob.ReadAt, and verifies
// each of them apart (default DefaultFetchWindow). 0 turns merging off, and
// read-ahead with it: each chunk is then fetched alone when first read. With
// a MemoryStore (the default store) the window is at most a sixteenth of
// the store's size, so that a window does not evict its own chunks.
func WithFetchWindow(n int64) Option {
	return func(o *options) error {
		if n < 0 || n > maxFetchWindow {
			return fmt.Errorf("lazy: fetch window %d must be between 0 and %d", n, maxFetchWindow)
		}
		o.fetchWindow, o.windowSet = n, true
		return nil
	}
}

// WithReadAhead lets at most n read-ahead windows of one layer be in flight
// at once (default DefaultReadAhead); 0 turns read-ahead off. A file read
// sequentially starts one whenever the window after its reader is neither
// stored nor under way.
func WithReadAhead(n int) Option {
	return func(o *options) error {
		if n < 0 {
			return fmt.Errorf("lazy: read-ahead %d must not be negative", n)
		}
		o.readAhead, o.readAheadSet = n, true
		return nil
	}
}

// withDemand makes layers share one count of demand fetches, so that the
// prefetch of each yields to reads in all of them.
func withDemand(d *demand) Option {
	return func(o *options) error {
		o.demand = d
		return nil
	}
}

// WithFileStore keeps files of at least WholeFileMin bytes whole in s once
// they have been read in full, and opens a file from s when s holds it (see
// FileStore). Several layers and images may share one s: files are keyed
// by the digest of their bytes, as the TOC gives it.
func WithFileStore(s FileStore) Option {
	return func(o *options) error {
		if s == nil {
			return fmt.Errorf("lazy: nil file store")
		}
		o.files = s
		return nil
	}
}

// WithRecord keeps the paths of the files read, in order, for Accessed.
// Off by default: it costs a lock and a map entry per file read.
func WithRecord() Option {
	return func(o *options) error {
		o.record = true
		return nil
	}
}
