package cache

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// fixedChunk returns chunk i of exactly size bytes, and its digest.
func fixedChunk(i, size int) ([]byte, digest.Digest) {
	data, _ := testFile(uint64(1000+i), size)
	return data, digest.FromBytes(data)
}

// signal returns a hook that reports each call on the returned channel
// without ever blocking the caller.
func signal() (func(), chan struct{}) {
	ch := make(chan struct{}, 1)
	return func() {
		select {
		case ch <- struct{}{}:
		default:
		}
	}, ch
}

// TestEvictionLRU: a Store opened on a cache over its cap evicts in its
// background goroutine, least recently used first, down to 90% of the cap.
func TestEvictionLRU(t *testing.T) {
	u, dir := newStore(t)
	const n, size = 10, 1000
	for i := range n {
		data, d := fixedChunk(i, size)
		u.Put(d, data)
		// Chunk i was last used n-i hours ago: chunk 0 is the oldest.
		backdate(t, entryPath(dir, d), time.Duration(n-i)*time.Hour)
	}
	u.Close() // writes its additions to the usage record
	checked, ch := signal()
	s, err := Open(dir, WithLogger(testLogger(t)), WithMaxSize(7000), withTestHooks(testHooks{checked: checked}))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	<-ch // the first check, made at start, has swept
	// 90% of 7000 is 6300: the four oldest go, six remain.
	for i := range n {
		_, d := fixedChunk(i, size)
		if want := i >= 4; s.Has(d) != want {
			t.Errorf("chunk %d (used %d h ago): present = %v, want %v", i, n-i, !want, want)
		}
	}
	st := s.Stats()
	if st.Evictions != 4 || st.EvictedBytes != 4*size || st.Bytes != 6*size || st.Entries != 6 || st.MaxSize != 7000 {
		t.Errorf("Stats = %+v", st)
	}
}

// TestEvictionUnderLoad: goroutines Put and Get through a small-capped
// Store while it evicts: every Get returns the right bytes or a miss, and
// the cache ends under its cap.
func TestEvictionUnderLoad(t *testing.T) {
	const max = 1 << 20
	s, dir := newStore(t, WithMaxSize(max))
	other, err := Open(dir, WithLogger(testLogger(t)), WithMaxSize(max))
	if err != nil {
		t.Fatal(err)
	}
	const n = 64 // about 4 MiB of chunks in all
	var wg sync.WaitGroup
	for g := range 8 {
		st := []*Store{s, other}[g%2]
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 2))
			for range 200 {
				data, d := chunk(r.IntN(n))
				if r.IntN(2) == 0 {
					st.Put(d, data)
				} else if got, ok := st.Get(d); ok && !bytes.Equal(got, data) {
					t.Errorf("Get(%s) returned wrong bytes", d)
				}
			}
		})
	}
	wg.Wait()
	other.Close()
	s.Close()
	// Sweep once more, the way the goroutine does, now that nothing
	// writes, once the last Puts are past the window that protects fresh
	// entries.
	time.Sleep(2 * freshMargin)
	s.check(t.Context())
	u, err := s.Usage(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if u.Total().Bytes > max {
		t.Errorf("cache holds %d bytes, over its cap of %d", u.Total().Bytes, max)
	}
	a, b := s.Stats(), other.Stats()
	if a.Evictions+b.Evictions == 0 {
		t.Error("nothing was evicted")
	}
	if a.Bytes != u.Total().Bytes || a.Entries != u.Total().Entries {
		t.Errorf("usage record says %d bytes in %d entries, a walk %+v", a.Bytes, a.Entries, u.Total())
	}
	for _, st := range []Stats{a, b} {
		if st.Corrupt+st.Errors+st.Rejected != 0 {
			t.Errorf("Stats = %+v", st)
		}
	}
	t.Logf("evicted %d + %d entries", a.Evictions, b.Evictions)
}

// TestEvictionSparesFreshEntriesAndLiveTempFiles: a sweep never removes an
// entry stored after its scan began, nor a temp file a writer still holds,
// even when told to remove everything it can.
func TestEvictionSparesFreshEntriesAndLiveTempFiles(t *testing.T) {
	var s *Store
	var fresh []digest.Digest
	putFresh := func() {
		data, d := fixedChunk(100+len(fresh), 500)
		s.Put(d, data)
		fresh = append(fresh, d)
	}
	s, dir := newStore(t, withTestHooks(testHooks{sweep: putFresh}))
	var old []digest.Digest
	for i := range 5 {
		data, d := fixedChunk(i, 500)
		s.Put(d, data)
		backdate(t, entryPath(dir, d), time.Hour)
		old = append(old, d)
	}
	tmp := filepath.Join(dir, "tmp")
	held := writeTemp(t, tmp, "put-1-held", 2*DefaultStaleAge)
	f, err := os.Open(held)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	writeTemp(t, tmp, "put-2-dead", 2*DefaultStaleAge)
	writeTemp(t, tmp, "put-3-young", 0)

	res, err := s.GC(t.Context(), GCOptions{MaxSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range old {
		if s.Has(d) {
			t.Errorf("old entry %s survived", d)
		}
	}
	if last := fresh[len(fresh)-1]; !s.Has(last) {
		t.Errorf("the entry stored as the last scan began was evicted (GC %+v)", res)
	}
	if left := tmpEntries(t, dir); len(left) != 2 || left[0] != "put-1-held" || left[1] != "put-3-young" {
		t.Errorf("temp files after GC = %v, want the held and the young one", left)
	}
	if res.TempFiles != 1 {
		t.Errorf("GC = %+v, want 1 temp file removed", res)
	}
}

// writeTemp writes a temp file as a writer would have, age ago.
func writeTemp(t *testing.T, dir, name string, age time.Duration) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	if age > 0 {
		backdate(t, p, age)
	}
	return p
}

// TestUsageSurvivesRestart: a new Store knows what an old one stored from
// the usage record alone, without walking a single entry, and its first
// check finds nothing to do.
func TestUsageSurvivesRestart(t *testing.T) {
	a, dir := newStore(t)
	var want KindUsage
	for i := range 20 {
		data, d := chunk(i)
		a.Put(d, data)
		want.add(KindUsage{Entries: 1, Bytes: int64(len(data))})
	}
	data, d := testFile(9, 100000)
	if err := a.PutFile(d, int64(len(data)), fillIn(data)); err != nil {
		t.Fatal(err)
	}
	want.add(KindUsage{Entries: 1, Bytes: int64(len(data))})
	a.Close()

	checked, ch := signal()
	swept := false
	b, err := Open(dir, WithLogger(testLogger(t)), WithMaxSize(1<<30),
		withTestHooks(testHooks{checked: checked, sweep: func() { swept = true }}))
	if err != nil {
		t.Fatal(err)
	}
	<-ch
	b.Close()
	if st := b.Stats(); st.Bytes != want.Bytes || st.Entries != want.Entries {
		t.Errorf("new Store sees %d bytes in %d entries, want %+v", st.Bytes, st.Entries, want)
	}
	if n := b.scanned.Load(); n != 0 || swept {
		t.Errorf("the new Store walked %d entries (swept %v)", n, swept)
	}
}

// TestUnknownUsageScannedInBackground: without a usage record (a cache
// from before it, or one whose record was lost), Open still walks nothing:
// the Store's goroutine reconciles the record by a scan after Open has
// returned.
func TestUnknownUsageScannedInBackground(t *testing.T) {
	a, dir := newStore(t)
	var want KindUsage
	for i := range 30 {
		data, d := chunk(i)
		a.Put(d, data)
		want.add(KindUsage{Entries: 1, Bytes: int64(len(data))})
	}
	if err := os.Remove(filepath.Join(dir, usageFile)); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	sweep := func() {
		select {
		case <-release:
		case <-time.After(time.Minute):
			t.Error("Open waited for a scan")
		}
	}
	checked, ch := signal()
	b, err := Open(dir, WithLogger(testLogger(t)), WithMaxSize(1<<30),
		withTestHooks(testHooks{checked: checked, sweep: sweep}))
	if err != nil {
		t.Fatal(err)
	}
	if st := b.Stats(); st.Bytes != -1 || st.Entries != -1 {
		t.Errorf("before any scan, Stats claims %d bytes in %d entries", st.Bytes, st.Entries)
	}
	close(release)
	<-ch
	b.Close()
	if st := b.Stats(); st.Bytes != want.Bytes || st.Entries != want.Entries {
		t.Errorf("after the background scan, Stats = %+v, want %+v", st, want)
	}
	if n := b.scanned.Load(); n != want.Entries {
		t.Errorf("scanned %d entries, want %d", n, want.Entries)
	}
}

func TestUsageRecordFormat(t *testing.T) {
	r := usageRecord{Bytes: 1 << 40, Entries: -3, Reconciled: 1763800000}
	b := r.marshal()
	if got, ok := parseUsage(b); !ok || got != r {
		t.Fatalf("round trip of %q = %+v, %v", b, got, ok)
	}
	if got, ok := parseUsage(append(bytes.Clone(b), "trailing junk"...)); !ok || got != r {
		t.Errorf("bytes after the newline broke the record: %+v, %v", got, ok)
	}
	for _, bad := range [][]byte{
		nil,
		[]byte("\n"),
		b[:len(b)-1],
		b[:len(b)/2],
		bytes.Replace(b, []byte("1099511627776"), []byte("1099511627777"), 1),
		bytes.Replace(b, []byte("strata-cache-usage 1"), []byte("strata-cache-usage 2"), 1),
		[]byte("strata-cache-usage 1 1 2 00000000\n"),
	} {
		if got, ok := parseUsage(bad); ok {
			t.Errorf("parseUsage(%q) = %+v, want invalid", bad, got)
		}
	}
}

// TestUsageRecordAdjustments: Puts and PutFiles add to the record exactly
// once per entry stored, however many writers race on one digest; a record
// that was lost starts counting from zero, unreconciled, and the next scan
// adds the base.
func TestUsageRecordAdjustments(t *testing.T) {
	s, dir := newStore(t)
	data, d := fixedChunk(1, 3000)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { s.Put(d, data) })
	}
	wg.Wait()
	if st := s.Stats(); st.Bytes != 3000 || st.Entries != 1 || st.Puts != 1 {
		t.Errorf("after 8 racing Puts of one chunk: %+v", st)
	}
	if err := os.WriteFile(filepath.Join(dir, usageFile), []byte("torn"), 0o644); err != nil {
		t.Fatal(err)
	}
	data2, d2 := fixedChunk(2, 500)
	s.Put(d2, data2)
	r, err := s.readUsage()
	if err != nil {
		t.Fatal(err)
	}
	if r != (usageRecord{Bytes: 500, Entries: 1}) {
		t.Errorf("record after a Put on a torn one = %+v, want 500 bytes, 1 entry, unreconciled", r)
	}
	if _, err := s.GC(t.Context(), GCOptions{}); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Bytes != 3500 || st.Entries != 2 {
		t.Errorf("after GC reconciled: %+v", st)
	}
}
