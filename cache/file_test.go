package cache

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
)

// Store satisfies lazy.FileStore without importing lazy; this is its
// method set.
var _ interface {
	OpenFile(digest.Digest) (*os.File, bool)
	HasFile(digest.Digest) bool
	PutFile(digest.Digest, int64, func(io.Writer) error) error
} = (*Store)(nil)

// testFile returns size deterministic bytes for seed, and their sha256
// digest.
func testFile(seed uint64, size int) ([]byte, digest.Digest) {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	data := make([]byte, size)
	rand.NewChaCha8(key).Read(data)
	return data, digest.FromBytes(data)
}

// fillIn writes data in pieces of uneven sizes, as a fetch would.
func fillIn(data []byte) func(io.Writer) error {
	return func(w io.Writer) error {
		for off, step := 0, 1; off < len(data); step = step*3 + 1 {
			n := min(step, len(data)-off)
			if _, err := w.Write(data[off : off+n]); err != nil {
				return err
			}
			off += n
		}
		return nil
	}
}

func filePath(dir string, d digest.Digest) string {
	enc := d.Encoded()
	return filepath.Join(dir, "files", d.Algorithm().String(), enc[:2], enc)
}

func readOpen(t *testing.T, s *Store, d digest.Digest) ([]byte, bool) {
	t.Helper()
	f, ok := s.OpenFile(d)
	if !ok {
		return nil, false
	}
	defer f.Close()
	got, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return got, true
}

func TestPutFileOpenFile(t *testing.T) {
	s, dir := newStore(t, WithSync(true))
	var total int64
	for i, size := range []int{0, 1, 65536, 2<<20 + 11} {
		data, d := testFile(uint64(i), size)
		total += int64(size)
		if err := s.PutFile(d, int64(size), fillIn(data)); err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if !s.HasFile(d) || s.Has(d) {
			t.Errorf("size %d: HasFile = %v, Has = %v; want a file entry only", size, s.HasFile(d), s.Has(d))
		}
		onDisk, err := os.ReadFile(filePath(dir, d))
		if err != nil || !bytes.Equal(onDisk, data) {
			t.Fatalf("size %d: entry at its documented place = %d bytes, %v", size, len(onDisk), err)
		}
		for range 3 {
			if got, ok := readOpen(t, s, d); !ok || !bytes.Equal(got, data) {
				t.Fatalf("size %d: OpenFile = %d bytes, %v", size, len(got), ok)
			}
		}
	}
	// PutFile verified each file as it wrote it: no open needed a hash.
	if n := s.hashes.Load(); n != 0 {
		t.Errorf("OpenFile hashed %d times after PutFile", n)
	}
	st := s.Stats()
	if st.FilePuts != 4 || st.FileHits != 12 || st.FileMisses != 0 || st.Bytes != total || st.Entries != 4 {
		t.Errorf("Stats = %+v", st)
	}
	// A second Store hashes each file on its first open only.
	s2, err := Open(dir, WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		for i, size := range []int{0, 1, 65536, 2<<20 + 11} {
			data, d := testFile(uint64(i), size)
			if got, ok := readOpen(t, s2, d); !ok || !bytes.Equal(got, data) {
				t.Fatalf("second Store, size %d: OpenFile = %d bytes, %v", size, len(got), ok)
			}
		}
	}
	if n := s2.hashes.Load(); n != 4 {
		t.Errorf("second Store hashed %d times for 8 opens of 4 files, want 4", n)
	}
	if left := tmpEntries(t, dir); len(left) != 0 {
		t.Errorf("temp files left: %v", left)
	}
}

func TestPutFileKeepsExisting(t *testing.T) {
	s, dir := newStore(t)
	data, d := testFile(1, 1000)
	if err := s.PutFile(d, 1000, fillIn(data)); err != nil {
		t.Fatal(err)
	}
	before := mtime(t, filePath(dir, d))
	called := false
	err := s.PutFile(d, 1000, func(io.Writer) error { called = true; return nil })
	if err != nil || called {
		t.Errorf("second PutFile = %v, fill called %v; want nil, not called", err, called)
	}
	if after := mtime(t, filePath(dir, d)); !after.Equal(before) {
		t.Error("second PutFile rewrote the entry")
	}
	if st := s.Stats(); st.FilePuts != 1 || st.Entries != 1 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestPutFileRefuses(t *testing.T) {
	data, d := testFile(2, 4096)
	other, _ := testFile(3, 4096)
	boom := errors.New("fetch failed")
	for _, tc := range []struct {
		name     string
		d        digest.Digest
		size     int64
		fill     func(io.Writer) error
		mismatch bool
		is       error
	}{
		{"other bytes", d, 4096, fillIn(other), true, nil},
		{"short", d, 4096, fillIn(data[:4095]), true, nil},
		{"long", d, 4095, fillIn(data), true, nil},
		{"size announced too big", d, 4097, fillIn(data), true, nil},
		{"negative size", d, -1, fillIn(data), true, nil},
		{"fill fails", d, 4096, func(w io.Writer) error { w.Write(data[:100]); return boom }, false, boom},
		{"fill ignores the write error", d, 10, func(w io.Writer) error { w.Write(data); return nil }, true, nil},
		{"invalid digest", "sha256:../../etc", 4096, fillIn(data), false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, dir := newStore(t)
			err := s.PutFile(tc.d, tc.size, tc.fill)
			if err == nil {
				t.Fatal("PutFile accepted it")
			}
			if errors.Is(err, ErrMismatch) != tc.mismatch {
				t.Errorf("error %q: wraps ErrMismatch = %v, want %v", err, !tc.mismatch, tc.mismatch)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %q does not wrap %q", err, tc.is)
			}
			if s.HasFile(d) {
				t.Error("the refused file was stored")
			}
			if left := tmpEntries(t, dir); len(left) != 0 {
				t.Errorf("temp files left: %v", left)
			}
		})
	}
}

// TestOpenFileCorrupt damages a file entry the Store has already verified
// and remembered: every change that shows in the file's identity (inode,
// size, mtime) makes the next OpenFile hash it again, find the damage,
// remove the entry and miss.
func TestOpenFileCorrupt(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spoil func(t *testing.T, p string, data []byte)
	}{
		{"bit flipped in place", func(t *testing.T, p string, data []byte) {
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt([]byte{data[len(data)/2] ^ 0x10}, int64(len(data)/2)); err != nil {
				t.Fatal(err)
			}
			f.Close()
		}},
		{"truncated", func(t *testing.T, p string, data []byte) {
			if err := os.Truncate(p, int64(len(data)-1)); err != nil {
				t.Fatal(err)
			}
		}},
		{"replaced by another file", func(t *testing.T, p string, data []byte) {
			bad := bytes.Clone(data)
			bad[0] ^= 1
			tmp := p + ".new"
			if err := os.WriteFile(tmp, bad, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, p); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, dir := newStore(t)
			data, d := testFile(4, 1<<20)
			if err := s.PutFile(d, int64(len(data)), fillIn(data)); err != nil {
				t.Fatal(err)
			}
			if _, ok := readOpen(t, s, d); !ok {
				t.Fatal("OpenFile missed")
			}
			p := filePath(dir, d)
			before := mtime(t, p)
			tc.spoil(t, p, data)
			if after := mtime(t, p); after.Equal(before) {
				t.Fatalf("the file system kept the mtime (%v) across a write: the memo cannot see it", after)
			}
			if got, ok := readOpen(t, s, d); ok {
				t.Fatalf("OpenFile returned %d bytes of a damaged entry", len(got))
			}
			if _, err := os.Lstat(p); !os.IsNotExist(err) {
				t.Errorf("damaged entry still on disk: %v", err)
			}
			if st := s.Stats(); st.Corrupt != 1 || st.FileMisses != 1 {
				t.Errorf("Stats = %+v", st)
			}
			if err := s.PutFile(d, int64(len(data)), fillIn(data)); err != nil {
				t.Fatal(err)
			}
			if got, ok := readOpen(t, s, d); !ok || !bytes.Equal(got, data) {
				t.Errorf("OpenFile after re-PutFile = %d bytes, %v", len(got), ok)
			}
		})
	}
}

// TestOpenFileCorruptHiddenFromMemo: damage that keeps the file's
// identity (same inode, size and mtime, as a deliberate touch -d would)
// gets past this Store's memo, as documented, but never past a new
// Store, which hashes on its first open.
func TestOpenFileCorruptHiddenFromMemo(t *testing.T) {
	s, dir := newStore(t)
	data, d := testFile(5, 300000)
	if err := s.PutFile(d, int64(len(data)), fillIn(data)); err != nil {
		t.Fatal(err)
	}
	p := filePath(dir, d)
	mt := mtime(t, p)
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{data[7] ^ 1}, 7)
	f.Close()
	if err := os.Chtimes(p, time.Time{}, mt); err != nil {
		t.Fatal(err)
	}
	if _, ok := readOpen(t, s, d); !ok {
		t.Fatal("the memo did not vouch for an unchanged identity (the test premise is wrong)")
	}
	s2, err := Open(dir, WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := readOpen(t, s2, d); ok {
		t.Fatal("a new Store's first OpenFile returned a damaged entry")
	}
	if s2.HasFile(d) {
		t.Error("damaged entry not removed")
	}
}

// TestOpenFileEvictedWhileOpen: an entry evicted (unlinked) while a reader
// has it open keeps serving that reader, whole and right.
func TestOpenFileEvictedWhileOpen(t *testing.T) {
	s, dir := newStore(t)
	data, d := testFile(6, 3<<20)
	if err := s.PutFile(d, int64(len(data)), fillIn(data)); err != nil {
		t.Fatal(err)
	}
	f, ok := s.OpenFile(d)
	if !ok {
		t.Fatal("OpenFile missed")
	}
	defer f.Close()
	backdate(t, filePath(dir, d), time.Hour)
	res, err := s.GC(t.Context(), GCOptions{MaxSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.Evicted != 1 || s.HasFile(d) {
		t.Fatalf("GC = %+v, HasFile = %v; want the entry evicted", res, s.HasFile(d))
	}
	got, err := io.ReadAll(f)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read after eviction = %d bytes, %v", len(got), err)
	}
	if _, ok := s.OpenFile(d); ok {
		t.Error("OpenFile hit an evicted entry")
	}
}

// TestOpenFileConcurrentFirstOpens: goroutines opening the same new file
// at once share one hash, and all read the right bytes.
func TestOpenFileConcurrentFirstOpens(t *testing.T) {
	s, dir := newStore(t)
	data, d := testFile(7, 1<<20)
	if err := s.PutFile(d, int64(len(data)), fillIn(data)); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(dir, WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			<-start
			f, ok := s2.OpenFile(d)
			if !ok {
				t.Error("OpenFile missed")
				return
			}
			defer f.Close()
			if got, err := io.ReadAll(f); err != nil || !bytes.Equal(got, data) {
				t.Errorf("read %d bytes, %v", len(got), err)
			}
		})
	}
	close(start)
	wg.Wait()
	if _, ok := readOpen(t, s2, d); !ok {
		t.Fatal("OpenFile missed")
	}
	if n := s2.hashes.Load(); n != 1 {
		t.Errorf("9 opens hashed the file %d times, want 1", n)
	}
}

// backdate sets p's atime and mtime to age ago, as if stored and last used
// then.
func backdate(t *testing.T, p string, age time.Duration) {
	t.Helper()
	when := time.Now().Add(-age)
	if err := os.Chtimes(p, when, when); err != nil {
		t.Fatal(err)
	}
}
