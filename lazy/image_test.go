package lazy

import (
	"context"
	"errors"
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
