package images

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/compression"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	kgzip "github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/stratafs/strata/lazy/convert"
)

// imageEpoch is every image config's creation time, so that configs, and
// so manifest digests, do not change with the day of the build.
var imageEpoch = time.Date(2025, 5, 20, 0, 0, 0, 0, time.UTC)

// pack writes the image in every format into its layout: gzip and zstd
// by compressing the layer tars (on top of the parent's blobs, reused as
// they are), then zstd:chunked and estargz by lazy/convert from those two.
func pack(ctx context.Context, b *builder, r *recipe, parent *Image, im *Image, tars []string) error {
	for _, f := range []Format{Gzip, Zstd} {
		t := time.Now()
		img, err := plainImage(ctx, b, r, parent, tars, f)
		if err != nil {
			return fmt.Errorf("pack %s: %w", f, err)
		}
		if err := writeVariant(ctx, im, f, img); err != nil {
			return err
		}
		im.StepSeconds["pack:"+string(f)] = time.Since(t).Seconds()
	}
	for _, c := range []struct{ f, from Format }{{ZstdChunked, Zstd}, {EStargz, Gzip}} {
		t := time.Now()
		if err := convertVariant(ctx, b, im, c.f, c.from); err != nil {
			return fmt.Errorf("convert to %s: %w", c.f, err)
		}
		im.StepSeconds["pack:"+string(c.f)] = time.Since(t).Seconds()
	}
	for _, v := range im.Variants {
		b.log.printf("%s: %-12s %8.1f MB in %d layers", im.Name, v.Format, float64(v.CompressedBytes)/1e6, v.Layers)
	}
	return nil
}

// plainImage compresses the layer tars in format f and appends them to
// the parent's image in the same format, or to an empty OCI image.
func plainImage(ctx context.Context, b *builder, r *recipe, parent *Image, tars []string, f Format) (v1.Image, error) {
	img, err := baseImage(ctx, r, parent, f)
	if err != nil {
		return nil, err
	}
	for i, tarPath := range tars {
		out := tarPath + "." + f.Tag()
		if err := compressFile(ctx, tarPath, out, f); err != nil {
			return nil, err
		}
		l, err := compressedLayer(out, f)
		if err != nil {
			return nil, err
		}
		s := r.steps[i]
		img, err = mutate.Append(img, mutate.Addendum{Layer: l, MediaType: layerMediaType(f),
			History: v1.History{Created: v1.Time{Time: imageEpoch}, CreatedBy: s.createdBy, Comment: "layer " + s.name}})
		if err != nil {
			return nil, err
		}
	}
	return img, nil
}

func baseImage(ctx context.Context, r *recipe, parent *Image, f Format) (v1.Image, error) {
	if parent != nil {
		return readVariant(ctx, parent.Variant(f).Location)
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	return mutate.ConfigFile(img, &v1.ConfigFile{
		Created:      v1.Time{Time: imageEpoch},
		OS:           "linux",
		Architecture: runtime.GOARCH,
		RootFS:       v1.RootFS{Type: "layers"},
		Config:       v1.Config{Cmd: r.config.cmd, Env: r.config.env, WorkingDir: r.config.workingDir},
	})
}

func layerMediaType(f Format) types.MediaType {
	if f == Zstd {
		return types.OCILayerZStd
	}
	return types.OCILayer
}

// compressedLayer opens an already compressed blob as a layer; the
// library decompresses it once for its diff_id and never recompresses it.
func compressedLayer(p string, f Format) (v1.Layer, error) {
	opts := []tarball.LayerOption{tarball.WithMediaType(layerMediaType(f))}
	if f == Zstd {
		opts = append(opts, tarball.WithCompression(compression.ZStd))
	}
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return os.Open(p) }, opts...)
}

// compressFile compresses a layer tar the way image builders do by
// default: gzip level 6, zstd level 3.
func compressFile(ctx context.Context, in, out string, f Format) error {
	src, err := os.Open(in)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.Create(out)
	if err != nil {
		return err
	}
	defer dst.Close()
	var w io.WriteCloser
	if f == Zstd {
		w, err = zstd.NewWriter(dst, zstd.WithEncoderLevel(zstd.SpeedDefault))
	} else {
		w, err = kgzip.NewWriterLevel(dst, kgzip.DefaultCompression)
	}
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, &ctxReader{ctx, src}); err != nil {
		w.Close()
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return dst.Close()
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// convertVariant converts the image's variant in format from into f with
// strata's converter, and writes it to the layout.
func convertVariant(ctx context.Context, b *builder, im *Image, f, from Format) error {
	src, err := readVariant(ctx, im.Variant(from).Location)
	if err != nil {
		return err
	}
	res, err := convert.Convert(ctx, src, convert.WithFormat(convert.Format(f)), convert.WithTempDir(b.work),
		convert.WithProgress(func(p convert.Progress) {
			if p.Done {
				b.log.printf("%s: %s layer %d/%d: %.1f MB -> %.1f MB", im.Name, f, p.Index+1, p.Count,
					float64(p.BytesIn)/1e6, float64(p.BytesOut)/1e6)
			}
		}))
	if err != nil {
		return err
	}
	defer res.Close()
	return writeVariant(ctx, im, f, res.Image)
}

// writeVariant writes img to the layout under f's tag and records it.
func writeVariant(ctx context.Context, im *Image, f Format, img v1.Image) error {
	loc := convert.Location{Layout: im.Layout, Tag: f.Tag()}
	d, err := convert.WriteImage(ctx, loc, img)
	if err != nil {
		return err
	}
	m, err := img.Manifest()
	if err != nil {
		return err
	}
	v := Variant{Format: f, Tag: f.Tag(), Location: loc.String(), Digest: d.String(), Layers: len(m.Layers)}
	for _, l := range m.Layers {
		v.CompressedBytes += l.Size
	}
	im.Variants = append(im.Variants, v)
	return nil
}

// readVariant opens "oci:LAYOUT:TAG".
func readVariant(ctx context.Context, location string) (v1.Image, error) {
	loc, err := convert.ParseLocation(location, false)
	if err != nil {
		return nil, err
	}
	return convert.ReadImage(ctx, loc, v1.Platform{OS: "linux", Architecture: runtime.GOARCH})
}

// extractImage unpacks every layer of the image at location onto root.
func extractImage(ctx context.Context, location, root string) error {
	img, err := readVariant(ctx, location)
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	for i, l := range layers {
		if err := extractLayer(ctx, l, root); err != nil {
			return fmt.Errorf("layer %d: %w", i, err)
		}
	}
	return nil
}

func extractLayer(ctx context.Context, l v1.Layer, root string) error {
	rc, err := l.Uncompressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	return Extract(ctx, root, rc)
}
