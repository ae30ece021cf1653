package tests

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestReservedNames: names strata keeps for entries under construction
// cannot be created through the mount, and debris with such a name in the
// upper directory (left by a crash) is never shown.
func TestReservedNames(t *testing.T) {
	base := t.TempDir()
	layer := mkdirs(t, base, "layer")
	putFile(t, filepath.Join(layer, "f"), "f")
	upper := mkdirs(t, base, "upper")
	putFile(t, filepath.Join(upper, ".strata-tmp-0123456789abcdef"), "debris")
	m := mountStrata(t, []string{layer}, upper)
	const name = ".strata-tmp-mine"
	p := filepath.Join(m.Dir, name)
	if err := os.WriteFile(p, []byte("x"), 0o644); !errors.Is(err, unix.EPERM) {
		t.Errorf("create %s: %v, want EPERM", name, err)
	}
	if err := os.Mkdir(p, 0o755); !errors.Is(err, unix.EPERM) {
		t.Errorf("mkdir %s: %v, want EPERM", name, err)
	}
	if err := os.Rename(filepath.Join(m.Dir, "f"), p); !errors.Is(err, unix.EPERM) {
		t.Errorf("rename onto %s: %v, want EPERM", name, err)
	}
	ents, err := os.ReadDir(m.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name() != "f" {
		t.Errorf("root lists %v, want only f", ents)
	}
	if _, err := os.Lstat(filepath.Join(m.Dir, ".strata-tmp-0123456789abcdef")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("debris visible: %v", err)
	}
}
