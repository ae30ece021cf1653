package convert

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/stratafs/strata/lazy"
)

var formats = []struct {
	f  Format
	mt types.MediaType
}{{EStargz, types.OCILayer}, {ZstdChunked, types.OCILayerZStd}}

// convertTest converts the test image with a small chunk size, so that a
// file spans several chunks.
func convertTest(t *testing.T, src v1.Image, f Format, opts ...Option) *Result {
	t.Helper()
	opts = append([]Option{WithFormat(f), WithChunkSize(64 << 10), WithTempDir(t.TempDir()), WithCompressionLevel(1)}, opts...)
	res, err := Convert(context.Background(), src, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Close() })
	return res
}

func TestConvert(t *testing.T) {
	tars := testTars(t)
	src := sourceImage(t, tars)
	for _, tc := range formats {
		t.Run(string(tc.f), func(t *testing.T) {
			var mu sync.Mutex
			done := map[int]Progress{}
			res := convertTest(t, src, tc.f, WithProgress(func(p Progress) {
				mu.Lock()
				defer mu.Unlock()
				if p.Done {
					done[p.Index] = p
				}
			}))
			if res.Converted != len(tars) {
				t.Errorf("Converted = %d, want %d", res.Converted, len(tars))
			}
			checkImage(t, res.Image, tc.f, tc.mt, tars)
			checkProgress(t, res.Image, done, len(tars))
		})
	}
}

// checkImage verifies a converted image: media types and annotations, the
// config's diff_ids against the new blobs, and every file read lazily
// against the source tars.
func checkImage(t *testing.T, img v1.Image, f Format, mt types.MediaType, tars [][]byte) {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.OCIManifestSchema1 || m.Config.MediaType != types.OCIConfigJSON {
		t.Errorf("manifest %s, config %s: want OCI", m.MediaType, m.Config.MediaType)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Layers) != len(tars) || len(cfg.RootFS.DiffIDs) != len(tars) {
		t.Fatalf("%d layers, %d diff_ids, want %d", len(m.Layers), len(cfg.RootFS.DiffIDs), len(tars))
	}
	ils := make([]lazy.ImageLayer, len(m.Layers))
	for i, d := range m.Layers {
		blob := layerBytes(t, img, d.Digest)
		checkDescriptor(t, i, d, f, mt, blob)
		if got := uncompressedDigest(t, blob, d.MediaType); got != cfg.RootFS.DiffIDs[i] {
			t.Errorf("layer %d: diff_id %s, blob's tar is %s", i, cfg.RootFS.DiffIDs[i], got)
		}
		ils[i] = lazy.ImageLayer{Digest: d.Digest.String(), Annotations: d.Annotations, Blob: memBlob(blob)}
	}
	layers, err := lazy.OpenImage(context.Background(), ils)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range layers {
		want, got := expectTree(t, tars[i]), readTree(t, l)
		if len(tars[i]) > 1024 && len(want) < 3 {
			t.Fatalf("layer %d: only %d entries expected from its tar", i, len(want))
		}
		if !reflect.DeepEqual(want, got) {
			t.Errorf("layer %d (%s) read lazily differs from its source tar", i, l.Format())
			for k, w := range want {
				if g, ok := got[k]; !ok || !reflect.DeepEqual(w, g) {
					t.Logf("  %q: want %v/%o/%d bytes, got %v/%o/%d bytes (present %v)", k, w.typ, w.perm, len(w.data), g.typ, g.perm, len(g.data), ok)
				}
			}
			for k := range got {
				if _, ok := want[k]; !ok {
					t.Logf("  %q: unexpected", k)
				}
			}
		}
	}
}

func checkDescriptor(t *testing.T, i int, d v1.Descriptor, f Format, mt types.MediaType, blob []byte) {
	t.Helper()
	if d.MediaType != mt {
		t.Errorf("layer %d: media type %s, want %s", i, d.MediaType, mt)
	}
	if h, n, _ := v1.SHA256(strings.NewReader(string(blob))); h != d.Digest || n != d.Size {
		t.Errorf("layer %d: blob is %s (%d bytes), descriptor says %s (%d)", i, h, n, d.Digest, d.Size)
	}
	var keys []string
	switch f {
	case EStargz:
		keys = []string{lazy.AnnotationTOCDigest, AnnotationUncompressedSize}
	case ZstdChunked:
		keys = []string{lazy.AnnotationZstdChunkedManifest, AnnotationZstdChunkedPosition}
	}
	for _, k := range keys {
		if d.Annotations[k] == "" {
			t.Errorf("layer %d: no annotation %s in %v", i, k, d.Annotations)
		}
	}
	if f == ZstdChunked {
		// containers/storage reads the TOC from the position alone.
		var off, clen, ulen, typ int64
		if _, err := fmt.Sscanf(d.Annotations[AnnotationZstdChunkedPosition], "%d:%d:%d:%d", &off, &clen, &ulen, &typ); err != nil || typ != 1 || off+clen > int64(len(blob)) {
			t.Errorf("layer %d: position %q: %v", i, d.Annotations[AnnotationZstdChunkedPosition], err)
		} else if h, _, _ := v1.SHA256(strings.NewReader(string(blob[off : off+clen]))); h.String() != d.Annotations[lazy.AnnotationZstdChunkedManifest] {
			t.Errorf("layer %d: TOC at %d+%d is %s, checksum says %s", i, off, clen, h, d.Annotations[lazy.AnnotationZstdChunkedManifest])
		}
	}
}

func checkProgress(t *testing.T, img v1.Image, done map[int]Progress, n int) {
	t.Helper()
	m, _ := img.Manifest()
	if len(done) != n {
		t.Fatalf("progress: %d layers done, want %d", len(done), n)
	}
	for i, p := range done {
		if p.Count != n || p.Digest != m.Layers[i].Digest.String() || p.BytesOut != m.Layers[i].Size || p.BytesIn <= 0 {
			t.Errorf("progress of layer %d: %+v", i, p)
		}
	}
}

func layerBytes(t *testing.T, img v1.Image, h v1.Hash) []byte {
	t.Helper()
	l, err := img.LayerByDigest(h)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Converting a converted image keeps every layer, and the image itself.
func TestConvertIdempotent(t *testing.T) {
	src := sourceImage(t, testTars(t))
	for _, tc := range formats {
		t.Run(string(tc.f), func(t *testing.T) {
			first := convertTest(t, src, tc.f)
			kept := 0
			second := convertTest(t, first.Image, tc.f, WithProgress(func(p Progress) {
				if p.Kept {
					kept++
				}
			}))
			if second.Converted != 0 || kept != 3 {
				t.Errorf("second conversion converted %d layers, kept %d", second.Converted, kept)
			}
			d1, _ := first.Image.Digest()
			d2, _ := second.Image.Digest()
			if d1 != d2 {
				t.Errorf("digest changed: %s -> %s", d1, d2)
			}
			assertSameLayers(t, first.Image, second.Image, 0, 1, 2)
		})
	}
}

// A layer already in the wanted format is kept as it is; the others are
// converted, and the image still reads back.
func TestConvertMixed(t *testing.T) {
	tars := testTars(t)
	src := sourceImage(t, tars)
	est := convertTest(t, src, EStargz)
	zst := convertTest(t, est.Image, ZstdChunked)
	if zst.Converted != 3 {
		t.Fatalf("eStargz -> zstd:chunked converted %d layers, want 3", zst.Converted)
	}
	checkImage(t, zst.Image, ZstdChunked, types.OCILayerZStd, tars)
	back := convertTest(t, zst.Image, EStargz)
	checkImage(t, back.Image, EStargz, types.OCILayer, tars)
}

func assertSameLayers(t *testing.T, a, b v1.Image, idx ...int) {
	t.Helper()
	ma, _ := a.Manifest()
	mb, _ := b.Manifest()
	for _, i := range idx {
		if !reflect.DeepEqual(ma.Layers[i], mb.Layers[i]) {
			t.Errorf("layer %d: %+v != %+v", i, ma.Layers[i], mb.Layers[i])
		}
		if string(layerBytes(t, a, ma.Layers[i].Digest)) != string(layerBytes(t, b, mb.Layers[i].Digest)) {
			t.Errorf("layer %d: bytes differ", i)
		}
	}
}

func TestRoundTripLayout(t *testing.T) {
	tars := testTars(t)
	res := convertTest(t, sourceImage(t, tars), ZstdChunked)
	dir := t.TempDir() + "/layout"
	roundTrip(t, "oci:"+dir+":v1", res.Image, tars, ZstdChunked)
	// A second tag in the same layout; the first is still found by its tag.
	est := convertTest(t, res.Image, EStargz)
	roundTrip(t, "oci:"+dir+":v2", est.Image, tars, EStargz)
	roundTrip(t, "oci:"+dir+":v1", res.Image, tars, ZstdChunked)
	if _, err := ReadImage(context.Background(), mustLocation(t, "oci:"+dir), v1.Platform{}); !errors.Is(err, ErrNoImage) {
		t.Errorf("untagged read of a two-image layout: %v, want ErrNoImage", err)
	}
}

func TestRoundTripRegistry(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	tars := testTars(t)
	src := sourceImage(t, tars)
	// The source is pushed first, so that the conversion reads from the
	// registry, as strata convert does.
	srcLoc := mustLocation(t, host+"/test/app:plain")
	if _, err := WriteImage(context.Background(), srcLoc, src); err != nil {
		t.Fatal(err)
	}
	pulled, err := ReadImage(context.Background(), srcLoc, v1.Platform{OS: "linux", Architecture: "amd64"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range formats {
		res := convertTest(t, pulled, tc.f)
		roundTrip(t, host+"/test/app:"+strings.ReplaceAll(string(tc.f), ":", "-"), res.Image, tars, tc.f)
	}
}

// roundTrip writes img to loc, reads it back and checks it.
func roundTrip(t *testing.T, loc string, img v1.Image, tars [][]byte, f Format) {
	t.Helper()
	l := mustLocation(t, loc)
	d, err := WriteImage(context.Background(), l, img)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ReadImage(context.Background(), l, v1.Platform{OS: "linux", Architecture: "amd64"})
	if err != nil {
		t.Fatal(err)
	}
	if bd, _ := back.Digest(); bd != d {
		t.Errorf("%s: read back %s, wrote %s", loc, bd, d)
	}
	mt := types.OCILayer
	if f == ZstdChunked {
		mt = types.OCILayerZStd
	}
	checkImage(t, back, f, mt, tars)
}

func mustLocation(t *testing.T, s string) Location {
	t.Helper()
	l, err := ParseLocation(s, false)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestParseLocation(t *testing.T) {
	for _, tc := range []struct {
		in, layout, tag, ref string
	}{
		{in: "oci:/tmp/x", layout: "/tmp/x"},
		{in: "oci:/tmp/x:latest", layout: "/tmp/x", tag: "latest"},
		{in: "oci:rel/dir:v1.2", layout: "rel/dir", tag: "v1.2"},
		{in: "oci:/a:b/c", layout: "/a:b/c"},
		{in: "127.0.0.1:5000/app:v1", ref: "127.0.0.1:5000/app:v1"},
	} {
		l, err := ParseLocation(tc.in, false)
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		ref := ""
		if l.Ref != nil {
			ref = l.Ref.String()
			if l.Ref.Context().Scheme() != "http" {
				t.Errorf("%q: scheme %s, want http for loopback", tc.in, l.Ref.Context().Scheme())
			}
		}
		if l.Layout != tc.layout || l.Tag != tc.tag || ref != tc.ref {
			t.Errorf("%q: got layout %q tag %q ref %q", tc.in, l.Layout, l.Tag, ref)
		}
	}
	for _, bad := range []string{"oci:", "oci::tag", "UPPER/Case:tag"} {
		if _, err := ParseLocation(bad, false); !errors.Is(err, ErrLocation) {
			t.Errorf("%q: %v, want ErrLocation", bad, err)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, opt := range []Option{WithFormat("gzip"), WithChunkSize(1), WithCompressionLevel(0), WithParallelism(0), WithTempDir("")} {
		if _, err := Convert(context.Background(), nil, opt); err == nil {
			t.Errorf("bad option accepted")
		}
	}
	if _, err := ParseFormat("zstd"); !errors.Is(err, ErrFormat) {
		t.Errorf("ParseFormat(zstd): %v", err)
	}
}

// A cancelled context stops the conversion.
func TestConvertCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Convert(ctx, sourceImage(t, testTars(t)), WithTempDir(t.TempDir()))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Convert: %v", err)
	}
}

// A source blob that does not match its digest is refused, not converted.
func TestConvertCorruptSource(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "layout")
	loc := mustLocation(t, "oci:"+dir+":bad")
	src := sourceImage(t, testTars(t))
	if _, err := WriteImage(context.Background(), loc, src); err != nil {
		t.Fatal(err)
	}
	m, _ := src.Manifest()
	blob := filepath.Join(dir, "blobs", "sha256", m.Layers[0].Digest.Hex)
	b, err := os.ReadFile(blob)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 1
	if err := os.WriteFile(blob, b, 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := ReadImage(context.Background(), loc, v1.Platform{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Convert(context.Background(), img, WithTempDir(t.TempDir())); !errors.Is(err, ErrImage) {
		t.Errorf("Convert of a corrupt layer: %v, want ErrImage", err)
	}
}
