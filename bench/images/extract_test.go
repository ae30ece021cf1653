package images

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

type tarEnt struct {
	name, body, link string
	typ              byte
}

func tarOf(t *testing.T, ents ...tarEnt) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: 0o644, Size: int64(len(e.body))}
		if e.typ == tar.TypeDir {
			h.Mode = 0o755
		}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		must(t, tw.WriteHeader(h))
		if _, err := tw.Write([]byte(e.body)); err != nil && h.Size > 0 {
			t.Fatal(err)
		}
	}
	must(t, tw.Close())
	return &buf
}

func reg(name, body string) tarEnt { return tarEnt{name: name, body: body, typ: tar.TypeReg} }

// TestExtractConfined: no layer writes outside the root, whatever its
// names say.
func TestExtractConfined(t *testing.T) {
	cases := map[string][]tarEnt{
		"dotdot":          {reg("../escape", "x")},
		"dotdot inside":   {reg("a/../../escape", "x")},
		"through symlink": {{name: "evil", link: "..", typ: tar.TypeSymlink}, reg("evil/escape", "x")},
		"whiteout parent": {{name: "d/", typ: tar.TypeDir}, reg("d/.wh..", "")},
		"link outside":    {{name: "hl", link: "../escape", typ: tar.TypeLink}},
	}
	for name, ents := range cases {
		t.Run(name, func(t *testing.T) {
			parent := t.TempDir()
			root := filepath.Join(parent, "root")
			must(t, os.Mkdir(root, 0o755))
			err := Extract(context.Background(), root, tarOf(t, ents...))
			if !errors.Is(err, ErrBadLayer) {
				t.Errorf("Extract = %v, want ErrBadLayer", err)
			}
			if _, err := os.Lstat(filepath.Join(parent, "escape")); err == nil {
				t.Error("a file was written outside the root")
			}
			if _, err := os.Stat(root); err != nil {
				t.Errorf("root was removed: %v", err)
			}
		})
	}
}

// TestExtractWhiteouts applies two layers: the second deletes a file and a
// directory, makes a directory opaque while adding to it, and replaces a
// directory with a file.
func TestExtractWhiteouts(t *testing.T) {
	root := t.TempDir()
	ctx := context.Background()
	must(t, Extract(ctx, root, tarOf(t,
		reg("a/keep", "1"), reg("a/gone", "2"), reg("b/x/y", "3"), reg("o/old", "4"), reg("s/t", "5"))))
	must(t, Extract(ctx, root, tarOf(t,
		reg("a/.wh.gone", ""), reg("b/.wh.x", ""),
		reg("o/new", "6"), reg("o/.wh..wh..opq", ""),
		reg("s", "now a file"))))
	for p, want := range map[string]string{"a/keep": "1", "o/new": "6", "s": "now a file"} {
		if b, err := os.ReadFile(filepath.Join(root, p)); err != nil || string(b) != want {
			t.Errorf("%s = %q, %v; want %q", p, b, err, want)
		}
	}
	for _, p := range []string{"a/gone", "b/x", "o/old", "a/.wh.gone", "o/.wh..wh..opq"} {
		if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
			t.Errorf("%s still exists", p)
		}
	}
}

func mountTmpfs(dir string) error { return unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m") }

func unmount(t *testing.T, dir string) {
	t.Helper()
	if err := unix.Unmount(dir, 0); err != nil {
		t.Errorf("unmount %s: %v", dir, err)
	}
}
