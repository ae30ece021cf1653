package cache

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestUnnamedWrite: a Put goes through an unnamed file, which leaves no
// temp file behind, takes mode 0644 whatever the umask, and of two Puts of
// one digest stores one.
func TestUnnamedWrite(t *testing.T) {
	s, dir := newStore(t)
	old := syscall.Umask(0o077)
	data, d := chunk(3)
	s.Put(d, data)
	s.Put(d, data) // the entry is there: nothing stored
	syscall.Umask(old)
	if s.namedOnly.Load() {
		t.Fatal("this file system refused O_TMPFILE; the test needs one that has it (ext4, xfs, tmpfs)")
	}
	info, err := os.Stat(entryPath(dir, d))
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o644 {
		t.Errorf("entry mode %v, want 0644", info.Mode().Perm())
	}
	if got, ok := s.Get(d); !ok || !bytes.Equal(got, data) {
		t.Errorf("Get = %d bytes, %v", len(got), ok)
	}
	if st := s.Stats(); st.Puts != 1 || st.Entries != 1 {
		t.Errorf("Stats = %+v, want one Put, one entry", st)
	}
	if left := tmpEntries(t, dir); len(left) != 0 {
		t.Errorf("temp files left: %v", left)
	}
}

// TestLinkViaProc: without CAP_DAC_READ_SEARCH an unnamed file is linked
// through /proc, with the same refusal to replace an existing name.
func TestLinkViaProc(t *testing.T) {
	dir := t.TempDir()
	link := func(content string) error {
		fd, err := openTmpfile(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		if err := writeFull(fd, []byte(content)); err != nil {
			t.Fatal(err)
		}
		return linkViaProc(fd, filepath.Join(dir, "entry"))
	}
	if err := link("first"); err != nil {
		t.Fatal(err)
	}
	if err := link("second"); !errors.Is(err, unix.EEXIST) {
		t.Errorf("second link: %v, want EEXIST", err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "entry")); err != nil || string(b) != "first" {
		t.Errorf("entry = %q, %v; want the first writer's bytes", b, err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("%d names in the directory, want 1", len(ents))
	}
}
