package convert

import (
	"fmt"
	"os"
	"strings"
)

// Format is a lazily loadable layer format.
type Format string

// The formats Convert writes.
const (
	// ZstdChunked: zstd frames per chunk, the TOC in skippable frames
	// (application/vnd.oci.image.layer.v1.tar+zstd).
	ZstdChunked Format = "zstd:chunked"
	// EStargz: gzip members per chunk, the TOC in a last gzip member
	// (application/vnd.oci.image.layer.v1.tar+gzip).
	EStargz Format = "estargz"
)

// ParseFormat accepts "zstd:chunked" or "estargz" (also "eStargz").
func ParseFormat(s string) (Format, error) {
	switch s {
	case string(ZstdChunked):
		return ZstdChunked, nil
	case string(EStargz), "eStargz":
		return EStargz, nil
	}
	return "", fmt.Errorf("convert: %w %q (want zstd:chunked or estargz)", ErrFormat, s)
}

// Progress reports one layer's conversion. BytesIn counts the source
// layer's compressed bytes read so far, BytesOut the new blob's bytes
// written so far. The last report of a layer has Done set; a layer already
// in the wanted format is reported once, Done and Kept, with BytesOut equal
// to BytesIn.
type Progress struct {
	Index    int    // 0-based, base layer first
	Count    int    // layers in the image
	Source   string // the source layer's digest
	Digest   string // the new layer's digest, once Done
	Format   Format
	BytesIn  int64
	BytesOut int64
	Done     bool
	Kept     bool
}

// Option configures Convert.
type Option func(*options) error

type options struct {
	format      Format
	chunkSize   int
	level       int
	parallelism int
	tmpDir      string
	progress    func(Progress)
	prioritized []string
}

// Defaults. A fixed build parallelism keeps the output, and so its digest,
// the same on every machine: estargz cuts the tar into that many parts.
const (
	DefaultFormat      = ZstdChunked
	DefaultChunkSize   = 1 << 20
	DefaultParallelism = 4
	// progressStep is how many bytes pass between two progress reports.
	progressStep = 1 << 20
)

func (o *options) setDefaults() {
	if o.format == "" {
		o.format = DefaultFormat
	}
	if o.chunkSize == 0 {
		o.chunkSize = DefaultChunkSize
	}
	if o.parallelism == 0 {
		o.parallelism = DefaultParallelism
	}
	if o.tmpDir == "" {
		o.tmpDir = os.TempDir()
	}
	if o.level == 0 {
		o.level = -1
	}
}

// WithFormat picks the output format (default ZstdChunked).
func WithFormat(f Format) Option {
	return func(o *options) error {
		if _, err := ParseFormat(string(f)); err != nil {
			return err
		}
		o.format = f
		return nil
	}
}

// WithChunkSize sets the largest chunk a file is cut into (default 1 MiB),
// the unit a lazy reader fetches and verifies.
func WithChunkSize(n int) Option {
	return func(o *options) error {
		if n < 4096 || n > 64<<20 {
			return fmt.Errorf("convert: chunk size %d out of range [4 KiB, 64 MiB]", n)
		}
		o.chunkSize = n
		return nil
	}
}

// WithCompressionLevel sets the gzip level (1-9) for eStargz or the zstd
// level (1-22, mapped to klauspost's four speeds) for zstd:chunked. Default:
// gzip 9 as estargz does, zstd "default" (level 3).
func WithCompressionLevel(level int) Option {
	return func(o *options) error {
		if level < 1 || level > 22 {
			return fmt.Errorf("convert: compression level %d out of range [1, 22]", level)
		}
		o.level = level
		return nil
	}
}

// WithParallelism sets how many parts of a layer are compressed at once
// (default DefaultParallelism). Changing it changes the output bytes.
func WithParallelism(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("convert: parallelism %d < 1", n)
		}
		o.parallelism = n
		return nil
	}
}

// WithTempDir sets where the new layers are kept until Result.Close
// (default os.TempDir()). It needs room for about twice the largest
// uncompressed layer plus every converted layer.
func WithTempDir(dir string) Option {
	return func(o *options) error {
		if dir == "" {
			return fmt.Errorf("convert: empty temp dir")
		}
		o.tmpDir = dir
		return nil
	}
}

// WithProgress calls fn as each layer converts, from the converting
// goroutine: fn must return quickly.
func WithProgress(fn func(Progress)) Option {
	return func(o *options) error {
		o.progress = fn
		return nil
	}
}

// WithPrioritized puts the given files (paths in the image, as a mount
// shows them) first in each layer that holds them, in that order, followed
// by eStargz's .prefetch.landmark: a lazy mount fetches them at once, so a
// container start that reads them waits for one large fetch instead of one
// round trip per file. `strata mount --record` writes such a list.
func WithPrioritized(paths []string) Option {
	return func(o *options) error {
		o.prioritized = nil
		for _, p := range paths {
			p = strings.Trim(strings.TrimSpace(p), "/")
			if p == "" || strings.Contains("/"+p+"/", "/../") {
				continue
			}
			o.prioritized = append(o.prioritized, p)
		}
		return nil
	}
}
