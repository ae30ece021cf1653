package images

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/stratafs/strata/lazy"
)

// lazyMetadata are the entries a lazy format adds at a layer's root that
// are not part of the image's file system: eStargz's TOC and its prefetch
// landmarks (a runtime hides them).
var lazyMetadata = map[string]bool{"stargz.index.json": true, ".prefetch.landmark": true, ".no.prefetch.landmark": true}

func TestBuildQuickFormats(t *testing.T) {
	im := quickSet(t)
	if len(im.Variants) != len(Formats) {
		t.Fatalf("%d variants, want %d: %+v", len(im.Variants), len(Formats), im.Variants)
	}
	want := map[Format]struct {
		mt  types.MediaType
		toc bool
	}{
		Gzip: {types.OCILayer, false}, Zstd: {types.OCILayerZStd, false},
		ZstdChunked: {types.OCILayerZStd, true}, EStargz: {types.OCILayer, true},
	}
	for _, f := range Formats {
		v := im.Variant(f)
		if v == nil {
			t.Fatalf("no %s variant", f)
		}
		if v.Tag != f.Tag() || v.Location != "oci:"+im.Layout+":"+f.Tag() || v.Layers != 3 || v.CompressedBytes <= 0 {
			t.Errorf("%s: variant %+v", f, v)
		}
		img := openVariant(t, v.Location)
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		for i, l := range m.Layers {
			_, tocErr := lazy.TOCDigest(l.Annotations)
			if l.MediaType != want[f].mt || (tocErr == nil) != want[f].toc {
				t.Errorf("%s layer %d: media type %s, TOC annotation error %v; want %s, TOC %v", f, i, l.MediaType, tocErr, want[f].mt, want[f].toc)
			}
		}
		if d, _ := img.Digest(); d.String() != v.Digest {
			t.Errorf("%s: layout digest %s, Variant says %s", f, d, v.Digest)
		}
	}
	if im.Files < 300 || im.UnpackedBytes < 5<<20 || len(im.Layers) != 3 {
		t.Errorf("quick image: %d files, %d bytes, %d layers: too small to be the python image", im.Files, im.UnpackedBytes, len(im.Layers))
	}
}

// TestQuickLayersEqualTree extracts each format's layers and compares the
// result with the tree the layers were cut from: every entry's type, mode,
// owner, size, mtime, link target, device number, xattrs and hard-link
// peer, and every regular file's sha256.
func TestQuickLayersEqualTree(t *testing.T) {
	im := quickSet(t)
	want := readTree(t, im.Tree, nil, true)
	for _, f := range Formats {
		t.Run(f.Tag(), func(t *testing.T) {
			dir := t.TempDir()
			if err := extractImage(context.Background(), im.Variant(f).Location, dir); err != nil {
				t.Fatal(err)
			}
			compareTrees(t, string(f), want, readTree(t, dir, lazyMetadata, true))
		})
	}
	// The layers exercise every kind of change (see quickRecipe).
	py := im.Layers[1]
	if py.Whiteouts != 2 {
		t.Errorf("python layer has %d whiteouts, want 2 (etc/motd, usr/share/quick/old)", py.Whiteouts)
	}
	for _, p := range []string{"etc/motd", "usr/share/quick/old"} {
		if _, ok := want[p]; ok {
			t.Errorf("%s should have been deleted", p)
		}
	}
	if e := want["usr/share/quick/hello.txt"]; e.linkPeer != "usr/share/quick/hello-link.txt" {
		t.Errorf("hello.txt and hello-link.txt are not one file: %v", e)
	}
	if e := want["dev/null"]; e.typ != 0o020000 || e.rdev != 0x103 {
		t.Errorf("dev/null: %v", e)
	}
}

func TestQuickImageRuns(t *testing.T) {
	im := quickSet(t)
	dir := t.TempDir()
	if err := extractImage(context.Background(), im.Variant(ZstdChunked).Location, dir); err != nil {
		t.Fatal(err)
	}
	if out := chrootOutput(t, dir, "python3", "-c", "print(1)"); out != "1\n" {
		t.Errorf("python3 -c 'print(1)' printed %q", out)
	}
	out := chrootOutput(t, dir, "python3", "/app/main.py")
	if !strings.HasPrefix(out, "strata-bench-app: ") || !strings.Contains(out, "words, top:") {
		t.Errorf("/app/main.py printed %q", out)
	}
}

// TestBuildQuickCached: a second build with the same recipe reads the
// cache; a changed recipe file rebuilds.
func TestBuildQuickCached(t *testing.T) {
	im := quickSet(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	set, err := BuildQuick(ctx, Options{CacheDir: quickOnce.dir})
	if err != nil {
		t.Fatal(err)
	}
	again := set.Image("quick")
	if !again.BuiltAt.Equal(im.BuiltAt) || again.Variant(EStargz).Digest != im.Variant(EStargz).Digest {
		t.Errorf("second BuildQuick rebuilt: built at %v, first at %v", again.BuiltAt, im.BuiltAt)
	}
	// A stale recipe stamp means a rebuild, into a fresh cache here so the
	// other tests keep theirs.
	dir := t.TempDir()
	if _, err := BuildQuick(ctx, Options{CacheDir: dir}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "quick", recipeFile), []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	first, _ := cached(filepath.Join(dir, "quick"), "old")
	set, err = BuildQuick(ctx, Options{CacheDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "quick", recipeFile)); strings.TrimSpace(string(b)) != set.Images[0].Recipe {
		t.Errorf("RECIPE after rebuild = %q, want %s", b, set.Images[0].Recipe)
	}
	if first == nil || !set.Images[0].BuiltAt.After(first.BuiltAt) {
		t.Errorf("a stale recipe did not rebuild the image")
	}
	if _, err := os.Stat(filepath.Join(dir, "work")); err == nil {
		if ents, _ := os.ReadDir(filepath.Join(dir, "work")); len(ents) > 0 {
			t.Errorf("work dir left behind: %v", ents)
		}
	}
}

func TestRecipeHash(t *testing.T) {
	rs := debianRecipes()
	python, large := rs[0], rs[1]
	if large.parent != python.name {
		t.Fatalf("debian-large's parent is %q", large.parent)
	}
	p1 := &Image{Recipe: python.hash(nil)}
	if python.hash(nil) != p1.Recipe || python.hash(nil) == large.hash(p1) {
		t.Error("recipe hashes are not stable or not distinct")
	}
	if large.hash(p1) == large.hash(&Image{Recipe: "other"}) {
		t.Error("debian-large's hash ignores its parent's recipe")
	}
	changed := *python
	changed.spec += " more"
	if changed.hash(nil) == p1.Recipe {
		t.Error("a changed spec keeps the hash")
	}
}

func openVariant(t *testing.T, location string) v1.Image {
	t.Helper()
	img, err := readVariant(context.Background(), location)
	if err != nil {
		t.Fatal(err)
	}
	return img
}
