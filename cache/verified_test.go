package cache

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
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
	if old, _ := filepath.Glob(filepath.Join(vdir, "*")); len(old) != 0 {
		t.Errorf("records left after the entry was found damaged: %v", old)
	}
}

// TestVerifiedDirOtherIdentity: a record of another identity (the file
// as it was before it was replaced, say), or something at a record's name
// that is not a record, is no reason to trust a file: it is hashed.
func TestVerifiedDirOtherIdentity(t *testing.T) {
	vdir := t.TempDir()
	a, dir := newStore(t, WithVerifiedDir(vdir))
	data, d := testFile(7, 100000)
	if err := a.PutFile(d, int64(len(data)), fillIn(data)); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(filePath(dir, d))
	if err != nil {
		t.Fatal(err)
	}
	key := keyOf(info)
	other := key
	other.mtime++
	for _, plant := range []func() error{
		func() error { return os.WriteFile(a.recordPath(d, other), nil, 0o600) },
		func() error { return os.Mkdir(a.recordPath(d, key), 0o700) },
	} {
		for _, k := range []fileKey{key, other} {
			os.Remove(a.recordPath(d, k))
		}
		if err := plant(); err != nil {
			t.Fatal(err)
		}
		s, err := Open(dir, WithVerifiedDir(vdir))
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := readOpen(t, s, d); !ok || !bytes.Equal(got, data) {
			t.Errorf("OpenFile %d bytes, %v", len(got), ok)
		}
		if s.hashes.Load() != 1 {
			t.Errorf("hashed %d times, want 1", s.hashes.Load())
		}
		s.Close()
	}
}

// TestVerifiedDirEviction: evicting a file entry removes its record, so
// the directory holds records of entries that exist.
func TestVerifiedDirEviction(t *testing.T) {
	vdir := t.TempDir()
	s, _ := newStore(t, WithVerifiedDir(vdir))
	data, d := testFile(8, 200000)
	if err := s.PutFile(d, int64(len(data)), fillIn(data)); err != nil {
		t.Fatal(err)
	}
	if recs, _ := filepath.Glob(filepath.Join(vdir, "*")); len(recs) != 1 {
		t.Fatalf("records after PutFile: %v, want one", recs)
	}
	time.Sleep(2 * freshMargin) // a sweep leaves alone what was written since it began
	if _, err := s.GC(context.Background(), GCOptions{MaxSize: 1}); err != nil {
		t.Fatal(err)
	}
	if s.HasFile(d) {
		t.Fatal("GC under a 1-byte cap kept the file")
	}
	if recs, _ := filepath.Glob(filepath.Join(vdir, "*")); len(recs) != 0 {
		t.Errorf("records after the entry was evicted: %v", recs)
	}
}
