package layer

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"testing"
)

func TestWriteTar(t *testing.T) {
	root := t.TempDir()
	mustWrite(t, root+"/d/f", "data")
	mustWrite(t, root+"/.wh.gone", "")
	if err := os.Link(root+"/d/f", root+"/d/g"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("d/f", root+"/ln"); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(root+"/d/f", os.ModeSetuid|0o750); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteTar(&buf, root); err != nil {
		t.Fatal(err)
	}
	got := map[string]*tar.Header{}
	bodies := map[string]string{}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		got[h.Name], bodies[h.Name] = h, string(b)
	}
	if len(got) != 5 {
		t.Fatalf("entries %v, want d/, d/f, d/g, ln, .wh.gone", got)
	}
	if h := got["d/"]; h == nil || h.Typeflag != tar.TypeDir {
		t.Errorf("d/: %+v", h)
	}
	f, g := got["d/f"], got["d/g"]
	if f == nil || g == nil {
		t.Fatalf("d/f %v, d/g %v", f, g)
	}
	// The first name carries the bytes, the other is a link to it.
	first, second := f, g
	if g.Typeflag == tar.TypeReg {
		first, second = g, f
	}
	if first.Typeflag != tar.TypeReg || bodies[first.Name] != "data" || first.Mode&0o7777 != 0o4750 {
		t.Errorf("file %s: %+v body %q", first.Name, first, bodies[first.Name])
	}
	if second.Typeflag != tar.TypeLink || second.Linkname != first.Name {
		t.Errorf("hard link %s: %+v", second.Name, second)
	}
	if h := got["ln"]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "d/f" {
		t.Errorf("ln: %+v", h)
	}
	if h := got[".wh.gone"]; h == nil || h.Typeflag != tar.TypeReg {
		t.Errorf(".wh.gone: %+v", h)
	}
}
