package tests

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// plainLayer is an ordinary gzip layer of a tar.
func plainLayer(t testing.TB, tr []byte) v1.Layer {
	t.Helper()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(tr)), nil },
		tarball.WithMediaType(types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// imagesOf builds one image of the tars per format: eStargz, zstd:chunked
// and plain gzip.
func imagesOf(t testing.TB, tars [][]byte) map[string]v1.Image {
	t.Helper()
	images := map[string]v1.Image{}
	for _, f := range lazyFormats {
		var blobs []lazyBlob
		for _, tr := range tars {
			blobs = append(blobs, buildLazyBlob(t, tr, f))
		}
		images[string(f)] = lazyImage(t, blobs)
	}
	var plain []v1.Layer
	for _, tr := range tars {
		plain = append(plain, plainLayer(t, tr))
	}
	images["gzip"] = imageOf(t, plain, make([]map[string]string, len(plain)))
	return images
}

// staticBinary builds a static Go program that prints its argument.
func staticBinary(t testing.TB) []byte {
	t.Helper()
	dir := t.TempDir()
	src := "package main\nimport (\"fmt\"; \"os\")\nfunc main() { fmt.Println(\"static says\", os.Args[1]) }\n"
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", "hello", "main.go")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GO111MODULE=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build of the static binary: %v: %s", err, out)
	}
	bin, err := os.ReadFile(filepath.Join(dir, "hello"))
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// TestRegistryMessyImages: images as real builders leave them mount in
// every format: a FROM scratch image of one static binary and nothing else
// (no directories, not even the root's entry), and an image with empty
// layers (no entries at all) and a layer holding only a whiteout.
func TestRegistryMessyImages(t *testing.T) {
	bin := staticBinary(t)
	scratch := [][]byte{makeLayerTar(t, []tarEnt{tFile("hello", bin, 0o755)})}
	empty := makeLayerTar(t, nil)
	layered := [][]byte{
		empty,
		makeLayerTar(t, []tarEnt{tDir("etc", 0o755, 0, 0), tFile("etc/a", []byte("a"), 0o644), tFile("etc/b", []byte("b"), 0o644)}),
		empty,
		makeLayerTar(t, []tarEnt{tWhiteout("etc/a")}),
		empty,
	}
	host := startRegistry(t, nil)
	for what, tars := range map[string][][]byte{"scratch": scratch, "layered": layered} {
		for format, img := range imagesOf(t, tars) {
			t.Run(what+"/"+format, func(t *testing.T) {
				ref := host + "/strata/" + what + ":" + format
				pushImage(t, ref, img)
				m := mountRegistry(t, ref, "")
				if what == "scratch" {
					out, err := exec.Command("chroot", m.Dir, "/hello", "hi").CombinedOutput()
					if err != nil || string(out) != "static says hi\n" {
						t.Fatalf("chroot /hello: %v: %q", err, out)
					}
					if names := listNames(t, m.Dir); names != "hello" {
						t.Errorf("scratch image root lists %q, want just hello", names)
					}
					return
				}
				if names := listNames(t, filepath.Join(m.Dir, "etc")); names != "b" {
					t.Errorf("etc lists %q, want b (a is whited out)", names)
				}
				if got, err := os.ReadFile(filepath.Join(m.Dir, "etc/b")); err != nil || string(got) != "b" {
					t.Errorf("etc/b: %q, %v", got, err)
				}
			})
		}
	}
}

func listNames(t testing.TB, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return strings.Join(names, " ")
}
