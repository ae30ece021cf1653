package lazy

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
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
