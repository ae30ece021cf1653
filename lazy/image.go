package lazy

import (
	"context"
	"errors"
	"fmt"

	digest "github.com/opencontainers/go-digest"
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
// layer's digest). It fails, naming the layer, if any layer cannot be read
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
	out := make([]*Layer, len(layers))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(openParallel)
	for i, il := range layers {
		g.Go(func() error {
			l, err := Open(gctx, il.Blob, tocs[i], append(opts[:len(opts):len(opts)], WithName(il.Digest))...)
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
