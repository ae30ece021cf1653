package tests

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestRegistryLowerHardLink: a layer whose tar hard-links to a file only a
// layer below holds (what applying the layer over its parents resolves)
// mounts in every format, and the link shows that file's bytes and
// attributes. A write through the link changes the link only: it is its
// own file, as overlayfs would have copied the target up into the link's
// layer.
func TestRegistryLowerHardLink(t *testing.T) {
	lib := bytes.Repeat([]byte("shared library bytes "), 20_000)
	base := []tarEnt{tDir("usr", 0o755, 0, 0), tDir("usr/lib", 0o755, 0, 0), tFile("usr/lib/libx.so", lib, 0o751).own(3, 4)}
	top := []tarEnt{tDir("usr", 0o755, 0, 0), tDir("usr/bin", 0o755, 0, 0),
		tLink("usr/bin/x", "usr/lib/libx.so"), tLink("usr/bin/x2", "usr/bin/x"), tLink("usr/bin/gone", "usr/lib/nothing")}
	tars := [][]byte{makeLayerTar(t, base), makeLayerTar(t, top)}
	host := startRegistry(t, nil)
	images := imagesOf(t, tars)
	for name, img := range images {
		t.Run(name, func(t *testing.T) {
			ref := host + "/strata/lowerlink:" + name
			pushImage(t, ref, img)
			upper := filepath.Join(t.TempDir(), "upper")
			if err := os.Mkdir(upper, 0o755); err != nil {
				t.Fatal(err)
			}
			m := mountRegistry(t, ref, upper)
			for _, p := range []string{"usr/bin/x", "usr/bin/x2"} {
				got, err := os.ReadFile(filepath.Join(m.Dir, p))
				if err != nil || !bytes.Equal(got, lib) {
					t.Fatalf("%s: %d bytes, %v; want the %d bytes of usr/lib/libx.so", p, len(got), err, len(lib))
				}
				if st := lstat(t, filepath.Join(m.Dir, p)); st.Mode&0o7777 != 0o751 || st.Uid != 3 || st.Gid != 4 {
					t.Errorf("%s: mode %o owner %d:%d; want usr/lib/libx.so's 751 3:4", p, st.Mode, st.Uid, st.Gid)
				}
			}
			if _, err := os.Lstat(filepath.Join(m.Dir, "usr/bin/gone")); !os.IsNotExist(err) {
				t.Errorf("a link to a file no layer holds: %v; want it left out", err)
			}
			if err := os.WriteFile(filepath.Join(m.Dir, "usr/bin/x"), []byte("patched"), 0o755); err != nil {
				t.Fatal(err)
			}
			if got, _ := os.ReadFile(filepath.Join(m.Dir, "usr/bin/x")); string(got) != "patched" {
				t.Errorf("usr/bin/x after the write: %q", got)
			}
			if got, _ := os.ReadFile(filepath.Join(m.Dir, "usr/lib/libx.so")); !bytes.Equal(got, lib) {
				t.Error("a write through the link changed the file of the layer below")
			}
		})
	}
}
