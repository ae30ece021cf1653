package cache

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
)

// Store satisfies lazy.ChunkStore without importing lazy; this is its
// method set.
var _ interface {
	Get(digest.Digest) ([]byte, bool)
	Put(digest.Digest, []byte)
} = (*Store)(nil)

// newStore opens a Store on a fresh directory, logging to the test, and
// closes it when the test ends.
func newStore(t *testing.T, opts ...Option) (*Store, string) {
	t.Helper()
	dir := t.TempDir()
	opts = append([]Option{WithLogger(testLogger(t))}, opts...)
	s, err := Open(dir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dir
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

type testChunk struct {
	data []byte
	d    digest.Digest
}

var (
	chunksMu sync.Mutex // guards chunks
	chunks   = map[int]testChunk{}
)

// chunk returns the i-th test chunk, of varying size, and its digest:
// sha256 for even i, sha512 for odd i. Every process computes the same.
// Callers must not modify the bytes: they are shared.
func chunk(i int) ([]byte, digest.Digest) {
	chunksMu.Lock()
	defer chunksMu.Unlock()
	c, ok := chunks[i]
	if !ok {
		c.data, c.d = makeChunk(i)
		chunks[i] = c
	}
	return c.data, c.d
}

func makeChunk(i int) ([]byte, digest.Digest) {
	r := rand.New(rand.NewPCG(uint64(i), 42))
	data := make([]byte, 1+r.IntN(128<<10)+8)
	for j := 0; j+8 <= len(data); j += 8 {
		binary.LittleEndian.PutUint64(data[j:], r.Uint64())
	}
	data = data[:len(data)-8]
	alg := digest.SHA256
	if i%2 == 1 {
		alg = digest.SHA512
	}
	return data, alg.FromBytes(data)
}

func entryPath(dir string, d digest.Digest) string {
	enc := d.Encoded()
	return filepath.Join(dir, "chunks", d.Algorithm().String(), enc[:2], enc)
}

func tmpEntries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// bothWritePaths runs test once with Puts through unnamed files and once
// through named temp files, the fallback for file systems without
// O_TMPFILE.
func bothWritePaths(t *testing.T, test func(t *testing.T, named bool)) {
	for _, named := range []bool{false, true} {
		t.Run(map[bool]string{false: "unnamed", true: "named"}[named], func(t *testing.T) { test(t, named) })
	}
}

func TestRoundTrip(t *testing.T) { bothWritePaths(t, testRoundTrip) }

func testRoundTrip(t *testing.T, named bool) {
	s, dir := newStore(t, WithSync(true))
	s.namedOnly.Store(named)
	var total int64
	for _, size := range []int{0, 1, 4096, 1<<20 + 3} {
		total += 2 * int64(size)
		for _, alg := range []digest.Algorithm{digest.SHA256, digest.SHA512} {
			data := bytes.Repeat([]byte{byte(size)}, size)
			d := alg.FromBytes(data)
			s.Put(d, data)
			got, ok := s.Get(d)
			if !ok || !bytes.Equal(got, data) {
				t.Fatalf("%s size %d: Get = %d bytes, %v", alg, size, len(got), ok)
			}
			if _, err := os.Stat(entryPath(dir, d)); err != nil {
				t.Errorf("entry not at its documented place: %v", err)
			}
		}
	}
	want := Stats{Hits: 8, Puts: 8, Bytes: total, Entries: 8}
	if st := s.Stats(); st != want {
		t.Errorf("Stats = %+v, want %+v", st, want)
	}
	if left := tmpEntries(t, dir); len(left) != 0 {
		t.Errorf("temp files left: %v", left)
	}
}

func TestGetMissing(t *testing.T) {
	s, _ := newStore(t)
	_, d := chunk(0)
	for _, d := range []digest.Digest{
		d,
		"",
		"sha256:zz",
		"md5:d41d8cd98f00b204e9800998ecf8427e",
		"sha256:../../../../etc/passwd",
		digest.Digest("sha256:" + strings.Repeat("A", 64)),
	} {
		if got, ok := s.Get(d); ok || got != nil {
			t.Errorf("Get(%q) = %d bytes, %v; want a miss", d, len(got), ok)
		}
	}
	if st := s.Stats(); st.Misses != 6 || st.Hits != 0 || st.Errors != 0 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestCorruptEntry(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spoil func([]byte) []byte
	}{
		{"bit flip", func(b []byte) []byte { b[len(b)/2] ^= 0x01; return b }},
		{"truncated", func(b []byte) []byte { return b[:len(b)/2] }},
		{"emptied", func(b []byte) []byte { return b[:0] }},
		{"grown", func(b []byte) []byte { return append(b, 0) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, dir := newStore(t)
			data, d := chunk(3)
			s.Put(d, data)
			p := entryPath(dir, d)
			onDisk, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, tc.spoil(onDisk), 0o644); err != nil {
				t.Fatal(err)
			}
			if got, ok := s.Get(d); ok {
				t.Fatalf("Get returned %d bytes of a corrupt entry", len(got))
			}
			if _, err := os.Stat(p); !os.IsNotExist(err) {
				t.Errorf("corrupt entry still on disk: %v", err)
			}
			if st := s.Stats(); st.Corrupt != 1 || st.Misses != 1 {
				t.Errorf("Stats = %+v", st)
			}
			s.Put(d, data) // the next fetch repairs it
			if got, ok := s.Get(d); !ok || !bytes.Equal(got, data) {
				t.Errorf("Get after re-Put = %d bytes, %v", len(got), ok)
			}
		})
	}
}

// TestNotAnEntry plants things at an entry's path that cannot be entries:
// Get must neither hang, nor allocate their claimed size, nor return them.
func TestNotAnEntry(t *testing.T) {
	for _, tc := range []struct {
		name  string
		plant func(p string) error
	}{
		{"fifo", func(p string) error { return syscall.Mkfifo(p, 0o644) }},
		{"huge sparse file", func(p string) error {
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				return err
			}
			return os.Truncate(p, MaxEntrySize+1)
		}},
		{"empty dir", func(p string) error { return os.Mkdir(p, 0o755) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, dir := newStore(t)
			data, d := chunk(7)
			s.Put(d, data)
			p := entryPath(dir, d)
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			if err := tc.plant(p); err != nil {
				t.Fatal(err)
			}
			if got, ok := s.Get(d); ok {
				t.Fatalf("Get returned %d bytes", len(got))
			}
			if _, err := os.Lstat(p); !os.IsNotExist(err) {
				t.Errorf("still at the entry's path: %v", err)
			}
			if st := s.Stats(); st.Corrupt != 1 {
				t.Errorf("Stats = %+v", st)
			}
		})
	}
}

func TestPutRefusesMismatch(t *testing.T) {
	s, dir := newStore(t)
	data, d := chunk(4)
	other, _ := chunk(5)
	s.Put(d, other)
	s.Put("sha256:nothex", data)
	s.Put("", data)
	if got, ok := s.Get(d); ok {
		t.Fatalf("Get returned %d bytes that were refused", len(got))
	}
	if _, err := os.Stat(entryPath(dir, d)); !os.IsNotExist(err) {
		t.Errorf("refused data reached the disk: %v", err)
	}
	if st := s.Stats(); st.Rejected != 3 || st.Puts != 0 {
		t.Errorf("Stats = %+v", st)
	}
	if left := tmpEntries(t, dir); len(left) != 0 {
		t.Errorf("temp files left: %v", left)
	}
}

func TestPutKeepsExistingEntry(t *testing.T) {
	s, dir := newStore(t)
	data, d := chunk(6)
	s.Put(d, data)
	before, err := os.Stat(entryPath(dir, d))
	if err != nil {
		t.Fatal(err)
	}
	s.Put(d, data)
	after, err := os.Stat(entryPath(dir, d))
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) {
		t.Error("second Put replaced the entry")
	}
	if st := s.Stats(); st.Puts != 1 {
		t.Errorf("Puts = %d, want 1", st.Puts)
	}
}

// TestDirRemovedUnderneath: clearing the cache by hand while a Store is
// open costs misses, not a Store that can no longer write.
func TestDirRemovedUnderneath(t *testing.T) { bothWritePaths(t, testDirRemovedUnderneath) }

func testDirRemovedUnderneath(t *testing.T, named bool) {
	s, dir := newStore(t)
	s.namedOnly.Store(named)
	data, d := chunk(8)
	s.Put(d, data)
	for _, sub := range []string{"chunks", "tmp"} {
		if err := os.RemoveAll(filepath.Join(dir, sub)); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := s.Get(d); ok {
		t.Fatal("Get hit on a removed entry")
	}
	s.Put(d, data)
	if got, ok := s.Get(d); !ok || !bytes.Equal(got, data) {
		t.Errorf("Get after re-Put = %d bytes, %v", len(got), ok)
	}
}

func TestStaleTempFilesRemovedAtOpen(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(dir); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "tmp")
	old := time.Now().Add(-DefaultStaleAge - time.Minute)
	for name, mtime := range map[string]time.Time{
		"put-1-stale": old,
		"put-2-fresh": time.Now(),
	} {
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Open(dir, WithLogger(testLogger(t))); err != nil {
		t.Fatal(err)
	}
	left := tmpEntries(t, dir)
	if len(left) != 1 || left[0] != "put-2-fresh" {
		t.Errorf("temp files after Open = %v, want only the fresh one", left)
	}
}

func TestOpenOptions(t *testing.T) {
	if _, err := Open(t.TempDir(), WithLogger(nil)); err == nil {
		t.Error("Open accepted a nil logger")
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(file); err == nil {
		t.Error("Open accepted a regular file as its directory")
	}
}

// TestConcurrent has many goroutines, through two Stores on one directory,
// Put and Get the same few digests: every Get is right or a miss.
func TestConcurrent(t *testing.T) { bothWritePaths(t, testConcurrent) }

func testConcurrent(t *testing.T, named bool) {
	a, dir := newStore(t)
	b, err := Open(dir, WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	a.namedOnly.Store(named)
	b.namedOnly.Store(named)
	const n = 24
	var wg sync.WaitGroup
	for g := range 16 {
		s := []*Store{a, b}[g%2]
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for range 150 {
				data, d := chunk(r.IntN(n))
				if r.IntN(3) == 0 {
					s.Put(d, data)
				} else if got, ok := s.Get(d); ok && !bytes.Equal(got, data) {
					t.Errorf("Get(%s) returned wrong bytes", d)
				}
			}
		})
	}
	wg.Wait()
	for i := range n {
		data, d := chunk(i)
		a.Put(d, data)
		if got, ok := b.Get(d); !ok || !bytes.Equal(got, data) {
			t.Errorf("chunk %d: Get = %d bytes, %v", i, len(got), ok)
		}
	}
	if st := a.Stats(); st.Corrupt+st.Errors+st.Rejected != 0 {
		t.Errorf("a: %+v", st)
	}
	if st := b.Stats(); st.Corrupt+st.Errors+st.Rejected != 0 {
		t.Errorf("b: %+v", st)
	}
	if left := tmpEntries(t, dir); len(left) != 0 {
		t.Errorf("temp files left: %v", left)
	}
}

func TestHas(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("present")
	d := digest.FromBytes(data)
	if s.Has(d) {
		t.Fatal("Has before Put")
	}
	s.Put(d, data)
	if !s.Has(d) {
		t.Error("Has after Put is false")
	}
	if s.Has("sha256:../../etc/passwd") {
		t.Error("Has of an invalid digest is true")
	}
}

// TestUseRecording: a Get hit records a use by setting the entry's atime,
// at most once per touchAfter however hot the entry is; Has is not a use.
func TestUseRecording(t *testing.T) {
	s, dir := newStore(t)
	data, d := chunk(9)
	s.Put(d, data)
	p := entryPath(dir, d)
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	if err := os.Chtimes(p, old, old); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if !s.Has(d) {
			t.Fatal("Has = false")
		}
	}
	if got := atime(t, p); !got.Equal(old) {
		t.Fatalf("Has moved the atime to %v", got)
	}
	before := s.touches.Load()
	for range 50 {
		if _, ok := s.Get(d); !ok {
			t.Fatal("Get missed")
		}
	}
	if got := atime(t, p); time.Since(got) > time.Minute {
		t.Errorf("atime after Get = %v, want about now", got)
	}
	if n := s.touches.Load() - before; n != 1 {
		t.Errorf("50 Gets made %d atime updates, want 1", n)
	}
	if mt := mtime(t, p); !mt.Equal(old) {
		t.Errorf("recording a use changed the mtime to %v", mt)
	}
}

func atime(t *testing.T, p string) time.Time {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return time.Unix(fi.Sys().(*syscall.Stat_t).Atim.Unix())
}

func mtime(t *testing.T, p string) time.Time {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.ModTime()
}

// TestPutVerified: PutVerified trusts its caller's hash, but what it
// stores is still verified by every Get, so wrong bytes given to it are
// never served.
func TestPutVerified(t *testing.T) {
	s, _ := newStore(t)
	data, d := chunk(30)
	s.PutVerified(d, data)
	if got, ok := s.Get(d); !ok || !bytes.Equal(got, data) {
		t.Fatalf("Get after PutVerified = %d bytes, %v", len(got), ok)
	}
	other, _ := chunk(31)
	_, d2 := chunk(32)
	s.PutVerified(d2, other) // a caller's bug
	if got, ok := s.Get(d2); ok {
		t.Fatalf("Get served %d bytes that do not match their digest", len(got))
	}
	if st := s.Stats(); st.Corrupt != 1 {
		t.Errorf("Stats = %+v, want 1 corrupt entry found", st)
	}
}

// TestUsageRecordBatched: a Store writes its additions to the shared usage
// record together, soon after them, without a Stats or Close of its own,
// so another process sharing the cache sees them.
func TestUsageRecordBatched(t *testing.T) {
	s, dir := newStore(t)
	other, err := Open(dir, WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	var want int64
	for i := range 50 {
		data, d := chunk(200 + i)
		s.Put(d, data)
		want += int64(len(data))
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := other.Stats()
		if st.Entries == 50 && st.Bytes == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("usage record seen by another Store: %d entries, %d bytes; want 50, %d", st.Entries, st.Bytes, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
