package images

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestBuildSyntheticFiles builds files-tiny in a fresh cache and checks
// its shape in every format: 100 files under /files/t00/l00, the same
// tree from each format's layers, and the same manifests again from a
// second build (the image depends only on the recipe).
func TestBuildSyntheticFiles(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	set, err := BuildSynthetic(ctx, Options{CacheDir: t.TempDir()}, FilesTiny)
	if err != nil {
		t.Fatal(err)
	}
	im := set.Image(FilesTiny)
	if im == nil || im.Files != 100 || im.Entries != 103 || len(im.Layers) != 1 || len(im.Variants) != len(Formats) {
		t.Fatalf("files-tiny: %+v; want 100 files, 103 entries (/files, t00, l00), 1 layer, %d variants", im, len(Formats))
	}
	var first map[string]entry
	for _, f := range Formats {
		dir := t.TempDir()
		if err := extractImage(ctx, im.Variant(f).Location, dir); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		got := readTree(t, dir, lazyMetadata, true)
		if _, err := os.Stat(filepath.Join(dir, "files/t00/l00/f99.txt")); err != nil {
			t.Errorf("%s: %v", f, err)
		}
		if first == nil {
			first = got
			continue
		}
		compareTrees(t, string(f), first, got)
	}
	again, err := BuildSynthetic(ctx, Options{CacheDir: t.TempDir()}, FilesTiny)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range Formats {
		if a, b := again.Image(FilesTiny).Variant(f).Digest, im.Variant(f).Digest; a != b {
			t.Errorf("%s: a second build of files-tiny has manifest %s, the first %s: not reproducible", f, a, b)
		}
	}
}

func TestBuildSyntheticUnknown(t *testing.T) {
	if _, err := BuildSynthetic(context.Background(), Options{CacheDir: t.TempDir()}, "no-such-image"); err == nil {
		t.Error("BuildSynthetic of an unknown name succeeded")
	}
}
