package layer

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// requireRoot fails (never skips) a test that needs root: mknod of
// whiteouts and trusted.* xattrs.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root (device nodes, trusted.* xattrs); run it as root")
	}
}

func mustWrite(t *testing.T, p, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLocalReadDirBothWhiteoutForms(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	mustWrite(t, root+"/keep", "k")
	mustWrite(t, root+"/.wh.oci-gone", "")
	mustWrite(t, root+"/.wh..wh.plnk/x", "")
	mustWrite(t, root+"/ociopq/.wh..wh..opq", "")
	mustWrite(t, root+"/ociopq/in", "i")
	if err := unix.Mknod(root+"/ovl-gone", unix.S_IFCHR, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(root+"/ovlopq", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(root+"/ovlopq", OverlayOpaqueXattr, []byte("y"), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", root+"/link"); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(root+"/keep", "user.note", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	l, err := OpenLocal(root)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	d, err := l.ReadDir(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Type{"keep": TypeReg, "link": TypeSymlink, "oci-gone": TypeWhiteout,
		"ovl-gone": TypeWhiteout, "ociopq": TypeDir, "ovlopq": TypeDir}
	if len(d.Entries) != len(want) {
		t.Fatalf("entries %+v, want %v", d.Entries, want)
	}
	for i, e := range d.Entries {
		if want[e.Name] != e.Type {
			t.Errorf("%s: type %v, want %v", e.Name, e.Type, want[e.Name])
		}
		if i > 0 && d.Entries[i-1].Name >= e.Name {
			t.Errorf("entries not sorted: %q before %q", d.Entries[i-1].Name, e.Name)
		}
	}
	if e, _ := d.Find("link"); e.Target != "/etc/passwd" {
		t.Errorf("link target %q", e.Target)
	}
	if e, _ := d.Find("keep"); string(e.Xattrs["user.note"]) != "v" {
		t.Errorf("keep xattrs %v", e.Xattrs)
	}
	if d.Opaque {
		t.Error("root reported opaque")
	}
	for _, p := range []string{"ociopq", "ovlopq"} {
		sub, err := l.ReadDir(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if !sub.Opaque {
			t.Errorf("%s not reported opaque", p)
		}
		if p == "ociopq" && (len(sub.Entries) != 1 || sub.Entries[0].Name != "in") {
			t.Errorf("ociopq entries %+v", sub.Entries)
		}
	}
}

func TestLocalConfinedToRoot(t *testing.T) {
	root := t.TempDir()
	mustWrite(t, root+"/d/f", "x")
	if err := os.Symlink("/etc", root+"/esc"); err != nil {
		t.Fatal(err)
	}
	l, err := OpenLocal(root)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	if _, err := l.ReadDir(ctx, "esc"); !errors.Is(err, ErrNotDir) {
		t.Errorf("ReadDir through a symlink: %v, want ErrNotDir", err)
	}
	if _, err := l.Open(ctx, "esc/passwd"); err == nil {
		t.Error("Open through a symlink succeeded")
	}
	for _, p := range []string{"../etc/passwd", "/etc/passwd", "d/../d/f", "d/"} {
		if _, err := l.Open(ctx, p); !errors.Is(err, ErrInvalidPath) {
			t.Errorf("Open(%q): %v, want ErrInvalidPath", p, err)
		}
	}
	if _, err := l.ReadDir(ctx, "missing"); !errors.Is(err, ErrNotExist) {
		t.Errorf("ReadDir(missing): %v, want ErrNotExist", err)
	}
	c, err := l.Open(ctx, "d/f")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 4)
	if n, _ := c.ReadAt(buf, 0); string(buf[:n]) != "x" {
		t.Errorf("read %q", buf[:n])
	}
	if _, ok := c.(Fder); !ok {
		t.Error("local content does not offer Fder")
	}
}

func TestOpenLocalErrors(t *testing.T) {
	if _, err := OpenLocal(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("OpenLocal of a missing dir succeeded")
	}
	f := filepath.Join(t.TempDir(), "file")
	mustWrite(t, f, "")
	if _, err := OpenLocal(f); err == nil {
		t.Error("OpenLocal of a file succeeded")
	}
}
