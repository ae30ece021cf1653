package lazy

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	digest "github.com/opencontainers/go-digest"
	"github.com/stratafs/strata/layer"
	"github.com/stratafs/strata/lazy/stream"
	"golang.org/x/sync/errgroup"
)

// The manifest annotations that announce a layer's TOC digest, the root of
// trust for everything read from the layer.
const (
	// AnnotationTOCDigest is eStargz's: the digest of the TOC JSON.
	AnnotationTOCDigest = "containerd.io/snapshot/stargz/toc.digest"
	// AnnotationZstdChunkedManifest is zstd:chunked's: the digest of the
	// compressed TOC ("manifest"), as containers/storage writes it.
	AnnotationZstdChunkedManifest = "io.github.containers.zstd-chunked.manifest-checksum"
	// annotationZstdChunkedManifestAlt is the same digest under the key
	// stargz-snapshotter's zstdchunked package writes.
	annotationZstdChunkedManifestAlt = "io.containers.zstd-chunked.manifest-checksum"
)

// The annotations that say where a zstd:chunked layer's TOC starts,
// "offset:compressed size:uncompressed size:type", under the keys
// containers/storage and stargz-snapshotter write.
var annotationsZstdChunkedPosition = []string{
	"io.github.containers.zstd-chunked.manifest-position",
	"io.containers.zstd-chunked.manifest-position",
}

// tocOffset returns where the annotations say the TOC starts, or 0. It is
// only a hint for fetching: the footer and the TOC digest still decide.
func tocOffset(annotations map[string]string) int64 {
	for _, key := range annotationsZstdChunkedPosition {
		if v, ok := annotations[key]; ok {
			off, _, _ := strings.Cut(v, ":")
			if n, err := strconv.ParseInt(off, 10, 64); err == nil && n > 0 {
				return n
			}
		}
	}
	return 0
}

// ErrNotLazy: a layer's manifest entry announces no TOC, so it cannot be
// read lazily (a plain gzip, zstd or uncompressed layer).
var ErrNotLazy = errors.New("lazy: layer announces no TOC (not eStargz or zstd:chunked)")

// TOCDigest returns the TOC digest a layer's manifest annotations announce.
func TOCDigest(annotations map[string]string) (digest.Digest, error) {
	for _, key := range []string{AnnotationTOCDigest, AnnotationZstdChunkedManifest, annotationZstdChunkedManifestAlt} {
		v, ok := annotations[key]
		if !ok {
			continue
		}
		d, err := digest.Parse(v)
		if err != nil {
			return "", fmt.Errorf("%w: annotation %s=%q: %v", ErrInvalidTOC, key, v, err)
		}
		return d, nil
	}
	return "", ErrNotLazy
}

// ImageLayer is one layer of an image as its manifest describes it, with a
// way to read its blob.
type ImageLayer struct {
	Digest      string
	Annotations map[string]string
	Blob        Blob
}

// openParallel bounds how many layers' TOCs are fetched at once.
const openParallel = 4

// OpenImage opens every layer of an image lazily, base layer first, fetching
// their TOCs in parallel. opts apply to every layer (WithName is set to the
// layer's digest); the layers' prefetches yield to reads in any of them. It fails, naming the layer, if any layer cannot be read
// lazily.
func OpenImage(ctx context.Context, layers []ImageLayer, opts ...Option) ([]*Layer, error) {
	// Annotations first, in order, so that a refusal names the same layer
	// every time and costs no fetch.
	tocs := make([]digest.Digest, len(layers))
	for i, il := range layers {
		toc, err := TOCDigest(il.Annotations)
		if err != nil {
			return nil, fmt.Errorf("layer %d (%s): %w", i, il.Digest, err)
		}
		tocs[i] = toc
	}
	opts = append(opts[:len(opts):len(opts)], withDemand(newDemand()))
	out := make([]*Layer, len(layers))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(openParallel)
	for i, il := range layers {
		g.Go(func() error {
			lopts := append(opts[:len(opts):len(opts)], WithName(il.Digest), withTOCOffset(tocOffset(il.Annotations)))
			l, err := Open(gctx, il.Blob, tocs[i], lopts...)
			if err != nil {
				return fmt.Errorf("layer %d (%s): %w", i, il.Digest, err)
			}
			out[i] = l
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

// Opened is one layer of an image, opened the best way it allows: lazily
// from its TOC, or, when the manifest announces none, by streaming its blob
// (package lazy/stream: the blob is read once in the background, and a path
// is answered once the stream has passed it).
type Opened struct {
	layer.Layer
	Lazy   *Layer        // set when read lazily from its TOC
	Stream *stream.Layer // set when streamed; Close it when done
}

// StreamLayer is how a layer without a TOC is described to OpenImageLayers.
type StreamLayer struct {
	MediaType string
	DiffID    digest.Digest // from the image config: verified at the end of the stream
	SpoolDir  string        // where its files' bytes are kept; "" for the default
}

// OpenImageLayers opens every layer of an image, base first: those whose
// manifest announces a TOC lazily (in parallel, as OpenImage), the others by
// streaming. streams[i] describes layer i for streaming. On error every
// stream already started is closed.
func OpenImageLayers(ctx context.Context, layers []ImageLayer, streams []StreamLayer, opts ...Option) ([]Opened, error) {
	if len(streams) != len(layers) {
		return nil, fmt.Errorf("lazy: %d stream descriptions for %d layers", len(streams), len(layers))
	}
	out := make([]Opened, len(layers))
	var lazyIdx []int
	var lazyLayers []ImageLayer
	for i, il := range layers {
		if _, err := TOCDigest(il.Annotations); err == nil {
			lazyIdx, lazyLayers = append(lazyIdx, i), append(lazyLayers, il)
			continue
		} else if !errors.Is(err, ErrNotLazy) {
			return nil, fmt.Errorf("layer %d (%s): %w", i, il.Digest, err)
		}
		s, err := openStream(ctx, il, streams[i])
		if err != nil {
			closeStreams(out)
			return nil, fmt.Errorf("layer %d (%s): %w", i, il.Digest, err)
		}
		out[i] = Opened{Layer: s, Stream: s}
	}
	opened, err := OpenImage(ctx, lazyLayers, opts...)
	if err != nil {
		closeStreams(out)
		return nil, err
	}
	for k, i := range lazyIdx {
		out[i] = Opened{Layer: opened[k], Lazy: opened[k]}
	}
	return out, nil
}

func openStream(ctx context.Context, il ImageLayer, sl StreamLayer) (*stream.Layer, error) {
	opts := []stream.Option{stream.WithName(il.Digest)}
	if d, err := digest.Parse(il.Digest); err == nil {
		opts = append(opts, stream.WithBlobDigest(d))
	}
	if sl.SpoolDir != "" {
		opts = append(opts, stream.WithSpoolDir(sl.SpoolDir))
	}
	return stream.Open(ctx, il.Blob, sl.MediaType, sl.DiffID, opts...)
}

func closeStreams(opened []Opened) {
	for _, o := range opened {
		if o.Stream != nil {
			o.Stream.Close()
		}
	}
}
