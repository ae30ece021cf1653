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
}

// Defaults. A TOC entry costs a few hundred bytes of memory once parsed, so
// the entry limit is what bounds a layer's memory; the size limits bound
// what a lying footer or chunk can make strata allocate.
const (
	DefaultMaxEntries   = 10_000_000
	DefaultMaxTOCSize   = 1 << 30  // uncompressed TOC JSON, and its compressed form
	DefaultMaxChunkSize = 64 << 20 // estargz writes 4 MiB chunks by default
	DefaultCacheSize    = 64 << 20
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
