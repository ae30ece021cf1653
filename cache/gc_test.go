package cache

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
)

// flipBit flips one bit of the file at p in place.
func flipBit(t *testing.T, p string, off int64) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x04
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// TestGCVerify: GC with Verify removes exactly the entries whose bytes no
// longer match (a flipped bit in a chunk and in a file, a truncated
// chunk), keeps the rest without counting the check as a use, and leaves
// the usage record equal to a walk.
func TestGCVerify(t *testing.T) {
	s, dir := newStore(t)
	var chunks []digest.Digest
	for i := range 6 {
		data, d := chunk(i)
		s.Put(d, data)
		chunks = append(chunks, d)
	}
	var files []digest.Digest
	for i := range 3 {
		data, d := testFile(uint64(20+i), 200000)
		if err := s.PutFile(d, int64(len(data)), fillIn(data)); err != nil {
			t.Fatal(err)
		}
		files = append(files, d)
	}
	flipBit(t, entryPath(dir, chunks[1]), 100)
	flipBit(t, filePath(dir, files[2]), 199999)
	if err := os.Truncate(entryPath(dir, chunks[4]), 10); err != nil {
		t.Fatal(err)
	}
	good := entryPath(dir, chunks[0])
	backdate(t, good, time.Hour)
	usedBefore := atime(t, good)

	res, err := s.GC(t.Context(), GCOptions{Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Corrupt != 3 || res.Evicted != 0 {
		t.Errorf("GC = %+v, want 3 corrupt entries removed", res)
	}
	for i, d := range chunks {
		if want := i != 1 && i != 4; s.Has(d) != want {
			t.Errorf("chunk %d: present = %v, want %v", i, !want, want)
		}
	}
	for i, d := range files {
		if want := i != 2; s.HasFile(d) != want {
			t.Errorf("file %d: present = %v, want %v", i, !want, want)
		}
	}
	if got := atime(t, good); !got.Equal(usedBefore) {
		t.Errorf("verifying an entry moved its last use from %v to %v", usedBefore, got)
	}
	u, err := s.Usage(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if res.After != u || u.Chunks.Entries != 4 || u.Files.Entries != 2 {
		t.Errorf("GC says it left %+v, a walk finds %+v", res.After, u)
	}
	if st := s.Stats(); st.Bytes != u.Total().Bytes || st.Entries != u.Total().Entries {
		t.Errorf("usage record %d bytes in %d entries, walk %+v", st.Bytes, st.Entries, u.Total())
	}
}

// TestGCMaxSize: GC evicts least recently used first, exactly down to
// MaxSize, chunks and files alike.
func TestGCMaxSize(t *testing.T) {
	s, dir := newStore(t)
	// Ten entries of 1000 bytes, alternately chunks and files; entry i
	// was last used 10-i hours ago.
	var paths []string
	for i := range 10 {
		data, d := fixedChunk(i, 1000)
		p := entryPath(dir, d)
		if i%2 == 0 {
			s.Put(d, data)
		} else {
			if err := s.PutFile(d, 1000, fillIn(data)); err != nil {
				t.Fatal(err)
			}
			p = filePath(dir, d)
		}
		backdate(t, p, time.Duration(10-i)*time.Hour)
		paths = append(paths, p)
	}
	res, err := s.GC(t.Context(), GCOptions{MaxSize: 3500})
	if err != nil {
		t.Fatal(err)
	}
	if res.Evicted != 7 || res.EvictedBytes != 7000 || res.After.Total() != (KindUsage{Entries: 3, Bytes: 3000}) {
		t.Errorf("GC = %+v, want 7 evicted, 3 left", res)
	}
	for i, p := range paths {
		_, err := os.Lstat(p)
		if want := i >= 7; (err == nil) != want {
			t.Errorf("entry %d: present = %v, want %v", i, err == nil, want)
		}
	}
	if st := s.Stats(); st.Evictions != 7 || st.Bytes != 3000 || st.Entries != 3 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestWalk(t *testing.T) {
	s, dir := newStore(t)
	cdata, cd := chunk(2)
	s.Put(cd, cdata)
	fdata, fd := testFile(30, 12345)
	if err := s.PutFile(fd, int64(len(fdata)), fillIn(fdata)); err != nil {
		t.Fatal(err)
	}
	used := time.Now().Add(-3 * time.Hour).Truncate(time.Second)
	if err := os.Chtimes(entryPath(dir, cd), used, used); err != nil {
		t.Fatal(err)
	}
	// Names that are not entries are not walked.
	junk := filepath.Join(filepath.Dir(entryPath(dir, cd)), "not-a-digest")
	if err := os.WriteFile(junk, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var got []Info
	if err := s.Walk(t.Context(), func(i Info) error { got = append(got, i); return nil }); err != nil {
		t.Fatal(err)
	}
	want := []Info{
		{Digest: cd, Kind: KindChunk, Size: int64(len(cdata)), LastUsed: used, Path: entryPath(dir, cd)},
		{Digest: fd, Kind: KindFile, Size: int64(len(fdata)), Path: filePath(dir, fd)},
	}
	if len(got) != 2 {
		t.Fatalf("Walk found %+v", got)
	}
	want[1].LastUsed = got[1].LastUsed
	if !slices.Equal(got, want) {
		t.Errorf("Walk = %+v\nwant  %+v", got, want)
	}
	if time.Since(got[1].LastUsed) > time.Minute {
		t.Errorf("a file stored just now was last used %v", got[1].LastUsed)
	}
	stop := errors.New("stop")
	n := 0
	if err := s.Walk(t.Context(), func(Info) error { n++; return stop }); err != stop || n != 1 {
		t.Errorf("Walk after fn failed = %v after %d calls", err, n)
	}
	u, err := s.Usage(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if u.Chunks != (KindUsage{1, int64(len(cdata))}) || u.Files != (KindUsage{1, 12345}) {
		t.Errorf("Usage = %+v", u)
	}
}

// TestOpenWithoutCreate: maintenance tools open only what is a cache, and
// create nothing.
func TestOpenWithoutCreate(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	if _, err := Open(missing, WithCreate(false)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open of a missing dir = %v, want ErrNotExist", err)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("Open created the missing dir: %v", err)
	}
	plain := t.TempDir()
	if _, err := Open(plain, WithCreate(false)); !errors.Is(err, ErrNotCache) {
		t.Errorf("Open of a plain dir = %v, want ErrNotCache", err)
	}
	if names, _ := os.ReadDir(plain); len(names) != 0 {
		t.Errorf("Open wrote into a plain dir: %v", names)
	}
	s, dir := newStore(t)
	data, d := chunk(1)
	s.Put(d, data)
	ro, err := Open(dir, WithCreate(false))
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := ro.Get(d); !ok || len(got) != len(data) {
		t.Error("a Store opened without create cannot read")
	}
}
