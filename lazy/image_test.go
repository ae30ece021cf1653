package lazy

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
)

func TestTOCDigestAnnotations(t *testing.T) {
	const d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	if got, err := TOCDigest(map[string]string{AnnotationTOCDigest: d}); err != nil || got.String() != d {
		t.Errorf("eStargz annotation: %v, %v", got, err)
	}
	if got, err := TOCDigest(map[string]string{AnnotationZstdChunkedManifest: d}); err != nil || got.String() != d {
		t.Errorf("zstd:chunked annotation: %v, %v", got, err)
	}
	if got, err := TOCDigest(map[string]string{"io.containers.zstd-chunked.manifest-checksum": d}); err != nil || got.String() != d {
		t.Errorf("zstd:chunked annotation, stargz-snapshotter's key: %v, %v", got, err)
	}
	if _, err := TOCDigest(nil); !errors.Is(err, ErrNotLazy) {
		t.Errorf("no annotation: %v, want ErrNotLazy", err)
	}
	if _, err := TOCDigest(map[string]string{AnnotationTOCDigest: "sha256:nothex"}); !errors.Is(err, ErrInvalidTOC) {
		t.Errorf("bad annotation: %v, want ErrInvalidTOC", err)
	}
}

func TestOpenImageRefusesNonLazyLayer(t *testing.T) {
	_, err := OpenImage(context.Background(), []ImageLayer{{Digest: "sha256:aa", Blob: nil}})
	if !errors.Is(err, ErrNotLazy) {
		t.Fatalf("OpenImage of an unannotated layer: %v, want ErrNotLazy", err)
	}
}

// TestTOCPositionHint: with zstd:chunked's manifest-position annotation,
// OpenImage reads a layer's TOC and footer in one request; a position past
// the TOC or absurd costs the usual second read, never a wrong tree.
func TestTOCPositionHint(t *testing.T) {
	tarData := makeTar(t, fixture(rand.New(rand.NewPCG(51, 52))))
	b := buildBlob(t, tarData, testFormats[1].opts)
	if b.position == "" {
		t.Fatal("test setup: the zstd:chunked build gave no manifest-position")
	}
	off, _, _ := strings.Cut(b.position, ":")
	for _, c := range []struct {
		name     string
		position string
		reads    int64
	}{
		{"right", b.position, 1},
		{"absent", "", 2},
		{"too late", fmt.Sprint(len(b.blob)-10) + ":1:1:1", 2},
		{"too early: one longer read", "100:1:1:1", 1},
		{"past the end", fmt.Sprint(len(b.blob)+100) + ":1:1:1", 2},
		{"garbage", "x:y", 2},
		{"the real one, by the other key", "other key " + off, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			ann := map[string]string{AnnotationZstdChunkedManifest: b.annot.String()}
			switch {
			case strings.HasPrefix(c.position, "other key "):
				ann["io.containers.zstd-chunked.manifest-position"] = strings.TrimPrefix(c.position, "other key ") + ":0:0:1"
			case c.position != "":
				ann["io.github.containers.zstd-chunked.manifest-position"] = c.position
			}
			mb := &memBlob{data: b.blob}
			ls, err := OpenImage(context.Background(), []ImageLayer{{Digest: "sha256:l", Annotations: ann, Blob: mb}})
			if err != nil {
				t.Fatal(err)
			}
			defer ls[0].Close()
			if n := mb.reads.Load(); n != c.reads {
				t.Errorf("%d reads to open, want %d", n, c.reads)
			}
			if _, err := ls[0].lookup("dir/small"); err != nil {
				t.Errorf("tree: %v", err)
			}
		})
	}
}

// TestFetchTOCs: FetchTOCs keeps each layer's verified TOC in the store,
// so that a later OpenImage on the store reads nothing from the blobs; a
// second FetchTOCs reads nothing either; a TOC that does not verify fails,
// naming its layer, and is not kept.
func TestFetchTOCs(t *testing.T) {
	tarData := makeTar(t, fixture(rand.New(rand.NewPCG(53, 54))))
	var layers []ImageLayer
	var blobs []*memBlob
	for i, f := range testFormats {
		b := buildBlob(t, tarData, f.opts)
		ann := map[string]string{AnnotationTOCDigest: b.annot.String()}
		if f.opts.zstd {
			ann = map[string]string{AnnotationZstdChunkedManifest: b.annot.String(), "io.github.containers.zstd-chunked.manifest-position": b.position}
		}
		mb := &memBlob{data: b.blob}
		blobs = append(blobs, mb)
		layers = append(layers, ImageLayer{Digest: fmt.Sprintf("sha256:l%d", i), Annotations: ann, Blob: mb})
	}
	store := NewMemoryStore(1 << 30)
	if err := FetchTOCs(context.Background(), layers, WithChunkStore(store)); err != nil {
		t.Fatal(err)
	}
	reads := func() (n int64) {
		for _, b := range blobs {
			n += b.reads.Load()
		}
		return n
	}
	before := reads()
	if before == 0 {
		t.Fatal("FetchTOCs read nothing")
	}
	if err := FetchTOCs(context.Background(), layers, WithChunkStore(store)); err != nil {
		t.Fatal(err)
	}
	ls, err := OpenImage(context.Background(), layers, WithChunkStore(store))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		if _, err := l.lookup("dir/small"); err != nil {
			t.Errorf("tree: %v", err)
		}
		l.Close()
	}
	if n := reads() - before; n != 0 {
		t.Errorf("a second FetchTOCs and OpenImage read the blobs %d times, want 0", n)
	}

	bad := layers[0]
	bad.Annotations = map[string]string{AnnotationTOCDigest: "sha256:" + strings.Repeat("0", 64)}
	err = FetchTOCs(context.Background(), []ImageLayer{bad}, WithChunkStore(store))
	if err == nil || !strings.Contains(err.Error(), "sha256:l0") {
		t.Errorf("FetchTOCs of a layer whose TOC does not match: %v, want an error naming sha256:l0", err)
	}
	if store.Has(digest.Digest("sha256:" + strings.Repeat("0", 64))) {
		t.Error("a TOC that does not verify was kept")
	}
}
