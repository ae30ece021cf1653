package stream

import (
	"fmt"

	digest "github.com/opencontainers/go-digest"
)

// Option configures Open.
type Option func(*options) error

type options struct {
	name       string
	spoolDir   string
	blobDigest digest.Digest
	chunkSize  int
	maxEntries int
	walkOrder  bool
}

// Defaults. A chunk is one Blob.ReadAt: large enough that a remote blob
// streams at link speed, small enough to hold in memory per layer.
const (
	DefaultChunkSize  = 4 << 20
	DefaultMaxEntries = 10_000_000
	minChunkSize      = 512
)

func (o *options) setDefaults() {
	if o.chunkSize == 0 {
		o.chunkSize = DefaultChunkSize
	}
	if o.maxEntries == 0 {
		o.maxEntries = DefaultMaxEntries
	}
}

// WithName sets the name the layer gives in errors and String (default: the
// diffID, else the blob digest, else the media type).
func WithName(name string) Option {
	return func(o *options) error {
		o.name = name
		return nil
	}
}

// WithSpoolDir puts the layer's spool file in dir (default os.TempDir()).
// The spool holds every regular file's bytes, so dir needs room for the
// whole uncompressed layer.
func WithSpoolDir(dir string) Option {
	return func(o *options) error {
		if dir == "" {
			return fmt.Errorf("stream: empty spool directory")
		}
		o.spoolDir = dir
		return nil
	}
}

// WithBlobDigest checks the compressed blob against d (the manifest's layer
// digest) once the stream has read all of it (default: not checked).
func WithBlobDigest(d digest.Digest) Option {
	return func(o *options) error {
		if err := d.Validate(); err != nil {
			return fmt.Errorf("stream: blob digest: %w", err)
		}
		o.blobDigest = d
		return nil
	}
}

// WithChunkSize sets the size of each sequential Blob.ReadAt (default
// DefaultChunkSize, at least 512).
func WithChunkSize(n int) Option {
	return func(o *options) error {
		if n < minChunkSize {
			return fmt.Errorf("stream: chunk size %d is below %d", n, minChunkSize)
		}
		o.chunkSize = n
		return nil
	}
}

// WithMaxEntries fails the stream when the tar holds more than n paths,
// implied directories included (default DefaultMaxEntries).
func WithMaxEntries(n int) Option {
	return func(o *options) error {
		if n <= 0 {
			return fmt.Errorf("stream: max entries %d must be positive", n)
		}
		o.maxEntries = n
		return nil
	}
}

// WithWalkOrder trusts the tar to list each directory's subtree in one run,
// as docker, buildkit and umoci write layers, so that a directory's listing
// is answered as soon as the stream has left it instead of at the end of the
// stream (see "Directory listings" in the package doc). A tar that breaks
// the promise after a listing was answered fails the layer (ErrOrder).
func WithWalkOrder() Option {
	return func(o *options) error {
		o.walkOrder = true
		return nil
	}
}
