package convert

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"maps"
	"os"
	"strconv"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/containerd/stargz-snapshotter/estargz/zstdchunked"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
	kgzip "github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/stratafs/strata/lazy"
)

// fileLayer is a converted layer blob kept in a temporary file.
type fileLayer struct {
	path        string
	digest      v1.Hash
	diffID      v1.Hash
	size        int64
	mediaType   types.MediaType
	annotations map[string]string // the format's, set by the build
}

var (
	_ partial.CompressedLayer = (*fileLayer)(nil)
	_ partial.WithDiffID      = (*fileLayer)(nil)
)

func (l *fileLayer) Digest() (v1.Hash, error)            { return l.digest, nil }
func (l *fileLayer) DiffID() (v1.Hash, error)            { return l.diffID, nil }
func (l *fileLayer) Size() (int64, error)                { return l.size, nil }
func (l *fileLayer) MediaType() (types.MediaType, error) { return l.mediaType, nil }
func (l *fileLayer) Compressed() (io.ReadCloser, error)  { return os.Open(l.path) }
func (l *fileLayer) descriptor(src map[string]string) v1.Descriptor {
	ann := maps.Clone(src)
	for _, k := range formatAnnotations {
		delete(ann, k)
	}
	if ann == nil {
		ann = map[string]string{}
	}
	maps.Copy(ann, l.annotations)
	return v1.Descriptor{MediaType: l.mediaType, Size: l.size, Digest: l.digest, Annotations: ann}
}

func convertLayer(ctx context.Context, l v1.Layer, desc v1.Descriptor, i, n int, dir string, o *options) (*fileLayer, error) {
	var in, out int64
	report := func(bi, bo int64, done bool) {
		in, out = max(in, bi), max(out, bo)
		if o.progress != nil {
			o.progress(Progress{Index: i, Count: n, Source: desc.Digest.String(), Format: o.format, BytesIn: in, BytesOut: out, Done: done})
		}
	}
	src, err := fetch(ctx, l, desc, dir, func(b int64) { report(b, 0, false) })
	if err != nil {
		return nil, err
	}
	defer os.Remove(src.Name())
	defer src.Close()
	fl, err := build(ctx, src, dir, o, func(b int64) { report(in, b, false) })
	if err != nil {
		return nil, err
	}
	p := Progress{Index: i, Count: n, Source: desc.Digest.String(), Digest: fl.digest.String(), Format: o.format, BytesIn: in, BytesOut: fl.size, Done: true}
	if o.progress != nil {
		o.progress(p)
	}
	return fl, nil
}

// fetch copies the source layer's compressed blob into a temporary file,
// checking it against its digest: estargz.Build wants random access, and a
// layout's blobs are not verified as they are read.
func fetch(ctx context.Context, l v1.Layer, desc v1.Descriptor, dir string, report func(int64)) (*os.File, error) {
	rc, err := l.Compressed()
	if err != nil {
		return nil, fmt.Errorf("read source blob: %w", err)
	}
	defer rc.Close()
	f, err := os.CreateTemp(dir, "src-")
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	_, err = io.Copy(f, &counter{stop: ctx.Err, r: io.TeeReader(rc, h), report: report})
	if err == nil && desc.Digest.Algorithm == "sha256" && hex.EncodeToString(h.Sum(nil)) != desc.Digest.Hex {
		err = fmt.Errorf("%w: blob is sha256:%x", ErrImage, h.Sum(nil))
	}
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("read source blob: %w", err)
	}
	return f, nil
}

// build runs estargz.Build over the source blob (it decompresses gzip or
// zstd itself) and stores the new blob in dir.
func build(ctx context.Context, src *os.File, dir string, o *options, report func(int64)) (*fileLayer, error) {
	fi, err := src.Stat()
	if err != nil {
		return nil, err
	}
	bopts, meta, mt := buildOptions(ctx, o)
	blob, err := estargz.Build(io.NewSectionReader(src, 0, fi.Size()), bopts...)
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", o.format, err)
	}
	defer blob.Close()
	out, err := os.CreateTemp(dir, "layer-")
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	size, err := io.Copy(io.MultiWriter(out, h), &counter{stop: ctx.Err, r: blob, report: report})
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = blob.Close()
	}
	if err != nil {
		os.Remove(out.Name())
		return nil, fmt.Errorf("build %s: %w", o.format, err)
	}
	fl := &fileLayer{path: out.Name(), size: size, mediaType: mt, digest: hashOf(h)}
	if fl.diffID, err = v1.NewHash(blob.DiffID().String()); err != nil {
		return nil, err
	}
	fl.annotations, err = layerAnnotations(o.format, blob, meta)
	return fl, err
}

func buildOptions(ctx context.Context, o *options) ([]estargz.Option, map[string]string, types.MediaType) {
	bopts := []estargz.Option{
		estargz.WithContext(ctx),
		estargz.WithChunkSize(o.chunkSize),
		estargz.WithParallelism(o.parallelism),
		// klauspost's gzip reads the source, and the output for its diff_id,
		// about 1.5x faster than the standard library's.
		estargz.WithGzipHelperFunc(func(r io.Reader) (io.ReadCloser, error) { return kgzip.NewReader(r) }),
	}
	if len(o.prioritized) > 0 {
		// A list covers the whole image: each layer holds only some of it.
		var missing []string
		bopts = append(bopts, estargz.WithPrioritizedFiles(o.prioritized), estargz.WithAllowPrioritizeNotFound(&missing))
	}
	if o.format == EStargz {
		if o.level > 0 {
			bopts = append(bopts, estargz.WithCompressionLevel(min(o.level, 9)))
		}
		return bopts, nil, types.OCILayer
	}
	level := zstd.SpeedDefault
	if o.level > 0 {
		level = zstd.EncoderLevelFromZstd(o.level)
	}
	meta := map[string]string{}
	c := &zstdCompression{&zstdchunked.Compressor{CompressionLevel: level, Metadata: meta}, &zstdchunked.Decompressor{}}
	return append(bopts, estargz.WithCompression(c)), meta, types.OCILayerZStd
}

// zstdCompression is the pair estargz.WithCompression needs for zstd:chunked.
type zstdCompression struct {
	*zstdchunked.Compressor
	*zstdchunked.Decompressor
}

// layerAnnotations names the new blob's TOC. The estargz library writes
// zstd:chunked's keys under their first names (io.containers.…);
// containers/storage and package lazy read the io.github.containers.… ones.
func layerAnnotations(f Format, blob *estargz.Blob, meta map[string]string) (map[string]string, error) {
	if f == EStargz {
		size, err := blob.UncompressedSize()
		if err != nil {
			return nil, err
		}
		return map[string]string{
			lazy.AnnotationTOCDigest:   blob.TOCDigest().String(),
			AnnotationUncompressedSize: strconv.FormatInt(size, 10),
		}, nil
	}
	sum, pos := meta[zstdchunked.ManifestChecksumAnnotation], meta[zstdchunked.ManifestPositionAnnotation]
	if sum == "" || pos == "" {
		return nil, fmt.Errorf("build zstd:chunked: the compressor announced no TOC")
	}
	return map[string]string{lazy.AnnotationZstdChunkedManifest: sum, AnnotationZstdChunkedPosition: pos}, nil
}

func hashOf(h hash.Hash) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
}

// counter counts the bytes read through it, reports them every
// progressStep, and stops once stop (the copying call's ctx.Err) fails.
type counter struct {
	stop    func() error
	r       io.Reader
	n, last int64
	report  func(int64)
}

func (c *counter) Read(p []byte) (int, error) {
	if err := c.stop(); err != nil {
		return 0, err
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.report != nil && (c.n-c.last >= progressStep || err == io.EOF) {
		c.last = c.n
		c.report(c.n)
	}
	return n, err
}
