package convert

import (
	"context"
	"errors"
	"fmt"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/stratafs/strata/lazy"
)

// Sentinel errors, tested with errors.Is. They arrive wrapped in an error
// that starts "convert: " and names the image, layer or location.
var (
	// ErrFormat: a format name other than zstd:chunked or estargz.
	ErrFormat = errors.New("unknown format")
	// ErrImage: the source image is inconsistent (its config's diff_ids do
	// not match its layers, a layer blob does not match its digest).
	ErrImage = errors.New("invalid source image")
	// ErrLocation: a SRC or DST that is neither a registry reference nor an
	// oci:PATH[:TAG] layout.
	ErrLocation = errors.New("invalid image location")
	// ErrNoImage: a layout without the image asked for (no such tag, or
	// several images and no tag), or an index with no image for the
	// platform.
	ErrNoImage = errors.New("no such image")
)

// Annotations written on converted layers, besides lazy.AnnotationTOCDigest
// and lazy.AnnotationZstdChunkedManifest.
const (
	// AnnotationUncompressedSize is eStargz's uncompressed blob size,
	// which containers/storage wants for a partial pull of eStargz.
	AnnotationUncompressedSize = "io.containers.estargz.uncompressed-size"
	// AnnotationZstdChunkedPosition locates zstd:chunked's compressed TOC:
	// "offset:compressed size:uncompressed size:1" (1 = CRFS-style JSON),
	// as containers/storage writes it.
	AnnotationZstdChunkedPosition = "io.github.containers.zstd-chunked.manifest-position"
)

// formatAnnotations are dropped from a converted layer's descriptor: they
// described the old blob.
var formatAnnotations = []string{
	lazy.AnnotationTOCDigest,
	lazy.AnnotationZstdChunkedManifest,
	AnnotationUncompressedSize,
	AnnotationZstdChunkedPosition,
	"io.github.containers.zstd-chunked.tarsplit-position",
	"io.github.containers.zstd-chunked.tarsplit-checksum",
	"io.containers.zstd-chunked.manifest-checksum",
	"io.containers.zstd-chunked.manifest-position",
}

// Result is a converted image. Its new layers live in a temporary
// directory until Close, so write Image out before closing.
type Result struct {
	Image v1.Image
	// Converted counts the layers re-written; the others were kept.
	Converted int
	dir       string
}

// Close removes the new layers' temporary files.
func (r *Result) Close() error {
	if r.dir == "" {
		return nil
	}
	return os.RemoveAll(r.dir)
}

// Convert re-writes every layer of src that is not already in the wanted
// format into it, and returns the new image: an OCI manifest whose config
// is src's with rootfs.diff_ids updated. The layers are converted one at a
// time (each one's compression is itself parallel); ctx cancels the work.
func Convert(ctx context.Context, src v1.Image, opts ...Option) (_ *Result, err error) {
	var o options
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	o.setDefaults()
	in, err := readSource(src)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(o.tmpDir, "strata-convert-")
	if err != nil {
		return nil, fmt.Errorf("convert: %w", err)
	}
	res := &Result{dir: dir}
	defer func() {
		if err != nil {
			res.Close()
		}
	}()
	out := make([]outLayer, len(in.layers))
	for i := range in.layers {
		if out[i], err = convertOne(ctx, in, i, dir, &o); err != nil {
			return nil, fmt.Errorf("convert: layer %d/%d (%s): %w", i+1, len(in.layers), in.manifest.Layers[i].Digest, err)
		}
		if !out[i].kept {
			res.Converted++
		}
	}
	if res.Image, err = assemble(src, in, out); err != nil {
		return nil, err
	}
	return res, nil
}

// source is what Convert reads of the source image, up front.
type source struct {
	manifest  *v1.Manifest
	rawConfig []byte
	diffIDs   []v1.Hash
	layers    []v1.Layer
}

func readSource(src v1.Image) (*source, error) {
	m, err := src.Manifest()
	if err != nil {
		return nil, fmt.Errorf("convert: manifest: %w", err)
	}
	raw, err := src.RawConfigFile()
	if err != nil {
		return nil, fmt.Errorf("convert: config: %w", err)
	}
	cfg, err := src.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("convert: config: %w", err)
	}
	layers, err := src.Layers()
	if err != nil {
		return nil, fmt.Errorf("convert: layers: %w", err)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) || len(layers) != len(m.Layers) {
		return nil, fmt.Errorf("convert: %w: %d layers but %d diff_ids in the config", ErrImage, len(m.Layers), len(cfg.RootFS.DiffIDs))
	}
	return &source{manifest: m, rawConfig: raw, diffIDs: cfg.RootFS.DiffIDs, layers: layers}, nil
}

// outLayer is one layer of the new image.
type outLayer struct {
	desc   v1.Descriptor
	diffID v1.Hash
	layer  partial.CompressedLayer
	kept   bool
}

func convertOne(ctx context.Context, in *source, i int, dir string, o *options) (outLayer, error) {
	desc := in.manifest.Layers[i]
	if keep(desc, o.format) {
		d := desc
		d.MediaType = ociLayerType(desc.MediaType)
		if o.progress != nil {
			o.progress(Progress{Index: i, Count: len(in.layers), Source: desc.Digest.String(), Digest: desc.Digest.String(),
				Format: o.format, BytesIn: desc.Size, BytesOut: desc.Size, Done: true, Kept: true})
		}
		return outLayer{desc: d, diffID: in.diffIDs[i], layer: in.layers[i], kept: true}, nil
	}
	fl, err := convertLayer(ctx, in.layers[i], desc, i, len(in.layers), dir, o)
	if err != nil {
		return outLayer{}, err
	}
	return outLayer{desc: fl.descriptor(desc.Annotations), diffID: fl.diffID, layer: fl}, nil
}

// keep tells a layer that needs no conversion: already lazily readable in
// the wanted format, or one that cannot be re-written at all (a
// non-distributable layer whose blob is not in the registry).
func keep(desc v1.Descriptor, f Format) bool {
	if !desc.MediaType.IsDistributable() {
		return true
	}
	if _, err := lazy.TOCDigest(desc.Annotations); err != nil {
		return false
	}
	switch f {
	case EStargz:
		return desc.MediaType == types.OCILayer || desc.MediaType == types.DockerLayer
	case ZstdChunked:
		return desc.MediaType == types.OCILayerZStd
	}
	return false
}

// ociLayerType maps Docker layer media types to OCI ones, since the new
// manifest is an OCI manifest.
func ociLayerType(mt types.MediaType) types.MediaType {
	switch mt {
	case types.DockerLayer:
		return types.OCILayer
	case types.DockerUncompressedLayer:
		return types.OCIUncompressedLayer
	case types.DockerForeignLayer:
		return types.OCIRestrictedLayer
	}
	return mt
}
