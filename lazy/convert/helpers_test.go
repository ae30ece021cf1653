package convert

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/compression"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/zstd"
	"github.com/stratafs/strata/layer"
	"github.com/stratafs/strata/lazy"
)

// memBlob is a lazy.Blob over a layer's compressed bytes.
type memBlob []byte

func (b memBlob) Size() int64 { return int64(len(b)) }

func (b memBlob) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	return bytes.NewReader(b).ReadAt(p, off)
}

type tarEntry struct {
	hdr  tar.Header
	data []byte
}

func reg(name string, data []byte) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data))}, data: data}
}

func dir(name string) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755}}
}

func makeTar(t testing.TB, ents []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := e.hdr
		h.ModTime = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// testTars are the source layers: ordinary files, a file of several
// chunks, links, a layer whose tar leaves out parent directories (as umoci
// writes them) with whiteouts and an opaque directory, and an empty layer.
func testTars(t testing.TB) [][]byte {
	return [][]byte{
		makeTar(t, []tarEntry{
			dir("etc/"), reg("etc/hostname", []byte("strata\n")), reg("etc/empty", nil),
			dir("bin/"), reg("bin/big", randBytes(1, 300<<10)),
			{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/sh", Linkname: "big", Mode: 0o777}},
			{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "bin/big2", Linkname: "bin/big"}},
			dir("old/"), reg("old/gone", []byte("x")),
			dir("opq/"), reg("opq/below", []byte("below")),
		}),
		makeTar(t, []tarEntry{
			reg("usr/lib/deep/file.txt", bytes.Repeat([]byte("deep "), 10000)),
			reg(".wh.old", nil),
			reg("opq/.wh..wh..opq", nil), reg("opq/above", []byte("above")),
			{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "etc/secret", Mode: 0o4750, Uid: 1000, Gid: 1000, Size: 3}, data: []byte("abc")},
		}),
		makeTar(t, nil),
	}
}

// sourceImage builds a Docker-schema image from tars: the first layer
// gzip, the second zstd, the others gzip.
func sourceImage(t testing.TB, tars [][]byte) v1.Image {
	t.Helper()
	img := empty.Image
	for i, data := range tars {
		opts := []tarball.LayerOption{tarball.WithCompressionLevel(gzip.BestSpeed)}
		if i == 1 {
			opts = []tarball.LayerOption{tarball.WithCompression(compression.ZStd), tarball.WithMediaType(types.OCILayerZStd)}
		}
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }, opts...)
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			t.Fatal(err)
		}
	}
	return img
}

// want is what a lazy reader must show of one entry of a source tar.
type want struct {
	typ    layer.Type
	perm   uint32
	data   []byte
	target string
	opaque bool
}

// expectTree reads a source tar the way an extractor would: whiteouts as
// whiteout entries, the opaque marker as a flag, missing parents implied.
func expectTree(t testing.TB, data []byte) map[string]want {
	t.Helper()
	tree := map[string]want{}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return tree
		}
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(path.Clean(h.Name), "/")
		for d := path.Dir(name); d != "."; d = path.Dir(d) {
			if _, ok := tree[d]; !ok {
				tree[d] = want{typ: layer.TypeDir, perm: 0o755}
			}
		}
		base, parent := path.Base(name), path.Dir(name)
		switch {
		case base == ".wh..wh..opq":
			w := tree[parent]
			w.opaque = true
			tree[parent] = w
		case strings.HasPrefix(base, ".wh."):
			tree[path.Join(parent, strings.TrimPrefix(base, ".wh."))] = want{typ: layer.TypeWhiteout}
		case h.Typeflag == tar.TypeDir:
			tree[name] = want{typ: layer.TypeDir, perm: uint32(h.Mode) & 0o7777, opaque: tree[name].opaque}
		case h.Typeflag == tar.TypeSymlink:
			tree[name] = want{typ: layer.TypeSymlink, perm: uint32(h.Mode) & 0o7777, target: h.Linkname}
		case h.Typeflag == tar.TypeLink:
			tree[name] = tree[h.Linkname]
		default:
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			tree[name] = want{typ: layer.TypeReg, perm: uint32(h.Mode) & 0o7777, data: b}
		}
	}
}

// readTree walks a lazy layer and reads every regular file.
func readTree(t testing.TB, l *lazy.Layer) map[string]want {
	t.Helper()
	ctx := context.Background()
	tree := map[string]want{}
	var walk func(p string)
	walk = func(p string) {
		d, err := l.ReadDir(ctx, p)
		if err != nil {
			t.Fatalf("%s: ReadDir %q: %v", l, p, err)
		}
		if p != "" {
			w := tree[p]
			w.opaque = d.Opaque
			tree[p] = w
		}
		for _, e := range d.Entries {
			child := path.Join(p, e.Name)
			w := want{typ: e.Type, perm: e.Perm, target: e.Target}
			if e.Type == layer.TypeWhiteout {
				w.perm = 0
			}
			if e.Type == layer.TypeReg {
				w.data = readAll(t, l, child, e.Size)
			}
			tree[child] = w
			if e.Type == layer.TypeDir {
				walk(child)
			}
		}
	}
	walk("")
	return tree
}

func readAll(t testing.TB, l *lazy.Layer, p string, size int64) []byte {
	t.Helper()
	c, err := l.Open(context.Background(), p)
	if err != nil {
		t.Fatalf("%s: Open %q: %v", l, p, err)
	}
	defer c.Close()
	b := make([]byte, size)
	if _, err := c.ReadAt(b, 0); err != nil && err != io.EOF {
		t.Fatalf("%s: read %q: %v", l, p, err)
	}
	return b
}

// uncompressedDigest decompresses a blob with a decoder of our own, not
// the estargz library's, and hashes the tar stream.
func uncompressedDigest(t testing.TB, blob []byte, mt types.MediaType) v1.Hash {
	t.Helper()
	var r io.Reader
	switch mt {
	case types.OCILayer, types.DockerLayer:
		zr, err := gzip.NewReader(bytes.NewReader(blob))
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	case types.OCILayerZStd:
		zr, err := zstd.NewReader(bytes.NewReader(blob))
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		r = zr
	default:
		t.Fatalf("media type %s", mt)
	}
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		t.Fatal(err)
	}
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
}
