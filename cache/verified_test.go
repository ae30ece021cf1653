package cache

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestVerifiedDirShared: a second Store (another process) sharing the
// verified dir opens a file entry the first verified without hashing it;
// one without the dir hashes it; and a file changed since is hashed
// again, found damaged and removed, its record with it.
func TestVerifiedDirShared(t *testing.T) {
	vdir := filepath.Join(t.TempDir(), "verified")
	a, dir := newStore(t, WithVerifiedDir(vdir))
	data, d := testFile(6, 1<<20)
	if err := a.PutFile(d, int64(len(data)), fillIn(data)); err != nil {
		t.Fatal(err)
	}
	open := func(opts ...Option) (*Store, []byte, bool) {
		s, err := Open(dir, append([]Option{WithLogger(testLogger(t))}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		got, ok := readOpen(t, s, d)
		return s, got, ok
	}
	b, got, ok := open(WithVerifiedDir(vdir))
	if !ok || !bytes.Equal(got, data) {
		t.Fatalf("OpenFile in a second Store: %d bytes, %v", len(got), ok)
	}
	if n := b.hashes.Load(); n != 0 {
		t.Errorf("the second Store hashed the file %d times; the first had verified it", n)
	}
	if c, _, _ := open(); c.hashes.Load() != 1 {
		t.Errorf("a Store without the verified dir hashed %d times, want 1", c.hashes.Load())
	}

	// Damage the file: its mtime moves, the record no longer matches.
	p := filePath(dir, d)
	before := mtime(t, p)
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{data[10] ^ 1}, 10)
	f.Close()
	if mtime(t, p).Equal(before) {
		t.Fatal("the file system kept the mtime across a write")
	}
	e, got, ok := open(WithVerifiedDir(vdir))
	if ok {
		t.Fatalf("OpenFile returned %d bytes of a damaged entry", len(got))
	}
	if e.hashes.Load() != 1 || e.Stats().Corrupt != 1 {
		t.Errorf("damaged file: hashed %d times, %d corrupt; want 1 and 1", e.hashes.Load(), e.Stats().Corrupt)
	}
	if _, err := os.Stat(e.recordPath(d)); !os.IsNotExist(err) {
		t.Errorf("the damaged entry's record is still there: %v", err)
	}
}

// TestVerifiedDirDamagedRecord: a record that is not one (garbage, another
// identity) is no reason to trust a file: it is hashed.
func TestVerifiedDirDamagedRecord(t *testing.T) {
	vdir := t.TempDir()
	a, dir := newStore(t, WithVerifiedDir(vdir))
	data, d := testFile(7, 100000)
	if err := a.PutFile(d, int64(len(data)), fillIn(data)); err != nil {
		t.Fatal(err)
	}
	for _, rec := range []string{"", "garbage", "1 2 3 4\n"} {
		if err := os.WriteFile(a.recordPath(d), []byte(rec), 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Open(dir, WithVerifiedDir(vdir))
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := readOpen(t, s, d); !ok || !bytes.Equal(got, data) {
			t.Errorf("record %q: OpenFile %d bytes, %v", rec, len(got), ok)
		}
		if s.hashes.Load() != 1 {
			t.Errorf("record %q: hashed %d times, want 1", rec, s.hashes.Load())
		}
		s.Close()
	}
}
