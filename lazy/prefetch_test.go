package lazy

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// uniqueChunks counts the distinct chunks of a layer: what a complete
// prefetch fetches.
func uniqueChunks(l *Layer) int64 {
	seen := map[chunkKey]bool{}
	for _, c := range l.idx.order {
		seen[keyOf(c)] = true
	}
	return int64(len(seen))
}

// TestPrefetchLandmark: the files an eStargz builder put before the
// landmark arrive without being read, and nothing else does; a layer with
// no landmark prefetches nothing.
func TestPrefetchLandmark(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 32))
	hot, hot2, cold := randBytes(r, 5000), randBytes(r, 300), randBytes(r, 20_000)
	tarData := makeTar(t, []tarEntry{reg("cold", cold), dir("etc/"), reg("etc/hot2", hot2), dir("bin/"), reg("bin/hot", hot)})
	b := buildBlob(t, tarData, buildOpts{chunkSize: 1000, level: 1, priority: []string{"bin/hot", "etc/hot2"}})
	l, mb := openBuilt(t, b, WithReadAhead(0))
	if l.idx.landmark <= 0 {
		t.Fatalf("landmark offset %d: the builder put none", l.idx.landmark)
	}
	want := int64(len(fileChunks(t, l, "bin/hot")) + len(fileChunks(t, l, "etc/hot2")))
	l.Prefetch(PrefetchLandmark)
	settle(t, l, want)
	time.Sleep(50 * time.Millisecond) // a prefetch past the landmark would show now
	s := l.Stats()
	if s.ChunkFetches != want || s.Prefetches < 1 {
		t.Fatalf("prefetch fetched %d chunks in %d windows; want the %d of the landmark's files", s.ChunkFetches, s.Prefetches, want)
	}
	reads := mb.reads.Load()
	for p, data := range map[string][]byte{"bin/hot": hot, "etc/hot2": hot2} {
		if got := readSequential(t, l, p, 700); !bytes.Equal(got, data) {
			t.Errorf("%s: wrong bytes after prefetch", p)
		}
	}
	if n := mb.reads.Load() - reads; n != 0 {
		t.Errorf("reading the prefetched files made %d blob reads; want 0", n)
	}
	if got := readSequential(t, l, "cold", 700); !bytes.Equal(got, cold) || mb.reads.Load() == reads {
		t.Errorf("cold file: right bytes %v, fetched %v; want both", bytes.Equal(got, cold), mb.reads.Load() > reads)
	}

	plain := buildBlob(t, tarData, buildOpts{chunkSize: 1000, level: 1})
	l2, mb2 := openBuilt(t, plain)
	opened := mb2.reads.Load() // the footer and the TOC
	l2.Prefetch(PrefetchLandmark)
	l2.Prefetch(PrefetchNone)
	if s, n := l2.Stats(), mb2.reads.Load()-opened; s.Prefetches != 0 || n != 0 {
		t.Errorf("no landmark: %d prefetch windows, %d reads; want none", s.Prefetches, n)
	}
}

// TestPrefetchAll fetches a whole layer while readers read it: every byte
// is right, every distinct chunk is fetched exactly once, and a read after
// the prefetch makes no request.
func TestPrefetchAll(t *testing.T) {
	for _, tf := range testFormats {
		t.Run(tf.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(33, 34))
			ents := randomTar(r, 60, 1000)
			tarData := makeTar(t, ents)
			b := buildBlob(t, tarData, tf.opts)
			sb := &slowBlob{memBlob: memBlob{data: b.blob}, latency: 200 * time.Microsecond}
			l, err := Open(context.Background(), sb, b.annot, WithFetchWindow(4000), WithCacheSize(64<<20))
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			want := tarFiles(t, tarData)
			l.Prefetch(PrefetchAll)
			var wg sync.WaitGroup
			for k := range 3 {
				wg.Go(func() {
					rr := rand.New(rand.NewPCG(uint64(k), 35))
					paths := shuffledPaths(want, rr)
					readRandomly(t, l, paths, want, rr)
				})
			}
			wg.Wait()
			total := uniqueChunks(l)
			settle(t, l, total)
			s := l.Stats()
			if s.ChunkFetches != total || s.FetchErrors != 0 || sb.overlaps.Load() != 0 {
				t.Errorf("%d chunk fetches, %d errors, %d overlapping requests; want %d, 0, 0", s.ChunkFetches, s.FetchErrors, sb.overlaps.Load(), total)
			}
			reads := sb.reads.Load()
			for p, data := range want {
				if got := readSequential(t, l, p, 1500); !bytes.Equal(got, data) {
					t.Errorf("%s: wrong bytes", p)
				}
			}
			if n := sb.reads.Load() - reads; n != 0 {
				t.Errorf("reads after a complete prefetch made %d requests; want 0", n)
			}
			t.Logf("%d chunks in %d requests (%d prefetch windows)", total, reads, s.Prefetches)
		})
	}
}

// shuffledPaths lists the non-empty files in random order.
func shuffledPaths(files map[string][]byte, r *rand.Rand) []string {
	var paths []string
	for p, data := range files {
		if len(data) > 0 {
			paths = append(paths, p)
		}
	}
	r.Shuffle(len(paths), func(i, j int) { paths[i], paths[j] = paths[j], paths[i] })
	return paths
}

// TestPrefetchClose: Close stops a prefetch blocked on the network and
// waits for it (goleak in TestMain catches a goroutine left behind), and
// reads still work after it.
func TestPrefetchClose(t *testing.T) {
	r := rand.New(rand.NewPCG(36, 37))
	big := randBytes(r, 50_000)
	tarData := makeTar(t, []tarEntry{reg("big", big)})
	b := buildBlob(t, tarData, testFormats[1].opts)
	gb := &gateBlob{memBlob: memBlob{data: b.blob}, blocked: make(chan struct{})}
	l, err := Open(context.Background(), gb, b.annot)
	if err != nil {
		t.Fatal(err)
	}
	gb.armed.Store(true)
	l.Prefetch(PrefetchAll)
	select {
	case <-gb.blocked:
	case <-time.After(5 * time.Second):
		t.Fatal("no prefetch started")
	}
	closed := make(chan struct{})
	go func() {
		l.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hangs on a prefetch")
	}
	if got := readSequential(t, l, "big", 4096); !bytes.Equal(got, big) {
		t.Error("read after Close differs")
	}
}

// TestPrefetchYieldsToReads: while a read waits for a fetch in any layer of
// the image, no prefetch window starts; once it is done, the prefetch goes
// on.
func TestPrefetchYieldsToReads(t *testing.T) {
	r := rand.New(rand.NewPCG(38, 39))
	tarData := makeTar(t, []tarEntry{reg("a", randBytes(r, 20_000))})
	b := buildBlob(t, tarData, testFormats[1].opts)
	mb := &memBlob{data: b.blob}
	ls, err := OpenImage(context.Background(), []ImageLayer{
		{Digest: "one", Annotations: map[string]string{AnnotationZstdChunkedManifest: b.annot.String()}, Blob: mb},
		{Digest: "two", Annotations: map[string]string{AnnotationZstdChunkedManifest: b.annot.String()}, Blob: mb},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	if ls[0].demand != ls[1].demand {
		t.Fatal("the layers of one image count their reads apart")
	}
	ls[1].demand.begin() // a reader of the other layer waits for a fetch
	opened := mb.reads.Load()
	ls[0].Prefetch(PrefetchAll)
	time.Sleep(100 * time.Millisecond)
	if n := mb.reads.Load() - opened; n != 0 {
		t.Fatalf("prefetch made %d reads while a reader waited", n)
	}
	ls[1].demand.end()
	settle(t, ls[0], uniqueChunks(ls[0]))
}

// TestPrefetchAuto: a reader that fetches little gets only what it reads;
// once readers have fetched a quarter of the layer, here and there, the
// rest arrives without being read.
func TestPrefetchAuto(t *testing.T) {
	r := rand.New(rand.NewPCG(45, 46))
	var ents []tarEntry
	for i := range 40 {
		ents = append(ents, reg(fmt.Sprintf("f%02d", i), randBytes(r, 5000)))
	}
	tarData := makeTar(t, ents)
	b := buildBlob(t, tarData, testFormats[1].opts)
	l, mb := openBuilt(t, b, WithFetchWindow(0), WithReadAhead(0))
	l.Prefetch(PrefetchAuto)
	want := tarFiles(t, tarData)
	readSequential(t, l, "f00", 5000)
	time.Sleep(50 * time.Millisecond)
	if s := l.Stats(); s.Prefetches != 0 {
		t.Fatalf("one file read: %d prefetch windows; want none yet", s.Prefetches)
	}
	// Backwards, so that the reads are no scan (TestPrefetchAutoScan).
	for i := 39; l.demanded.Load() < l.blob.Size()/autoShare; i-- {
		p := fmt.Sprintf("f%02d", i)
		if got := readSequential(t, l, p, 5000); !bytes.Equal(got, want[p]) {
			t.Fatalf("%s: wrong bytes", p)
		}
	}
	settle(t, l, uniqueChunks(l))
	reads := mb.reads.Load()
	for p, data := range want {
		if got := readSequential(t, l, p, 5000); !bytes.Equal(got, data) {
			t.Errorf("%s: wrong bytes", p)
		}
	}
	if n := mb.reads.Load() - reads; n != 0 || l.Stats().Prefetches == 0 {
		t.Errorf("after the auto prefetch: %d more reads, %d prefetch windows; want 0 and some", n, l.Stats().Prefetches)
	}
}

// TestPrefetchAutoScan: readers that read one file after another in blob
// order (a walk of the tree reading every file) set off the whole-layer
// prefetch after scanRun files, long before a quarter of the layer; the
// same files read in another order, or one file read chunk by chunk, do
// not.
func TestPrefetchAutoScan(t *testing.T) {
	r := rand.New(rand.NewPCG(47, 48))
	var ents []tarEntry
	ents = append(ents, reg("big", randBytes(r, 40000)))
	for i := range 60 {
		ents = append(ents, reg(fmt.Sprintf("f%02d", i), randBytes(r, 3000)))
	}
	tarData := makeTar(t, ents)
	want := tarFiles(t, tarData)
	b := buildBlob(t, tarData, testFormats[1].opts)
	read := func(l *Layer, p string) {
		t.Helper()
		if got := readSequential(t, l, p, 1000); !bytes.Equal(got, want[p]) {
			t.Fatalf("%s: wrong bytes", p)
		}
	}
	prefetched := func(l *Layer) bool {
		time.Sleep(50 * time.Millisecond)
		return l.Stats().Prefetches > 0
	}

	l, _ := openBuilt(t, b, WithFetchWindow(0), WithReadAhead(0))
	l.Prefetch(PrefetchAuto)
	read(l, "big")
	for _, i := range []int{50, 10, 30, 20, 40, 5} {
		read(l, fmt.Sprintf("f%02d", i))
	}
	if prefetched(l) {
		t.Fatal("a big file and files out of order set off the whole-layer prefetch")
	}

	l, _ = openBuilt(t, b, WithFetchWindow(0), WithReadAhead(0))
	l.Prefetch(PrefetchAuto)
	for i := range scanRun + 1 {
		read(l, fmt.Sprintf("f%02d", i))
	}
	if l.demanded.Load() >= l.blob.Size()/autoShare {
		t.Fatalf("test setup: %d files fetched a quarter of the layer", scanRun+1)
	}
	if !prefetched(l) {
		t.Fatalf("%d files read in blob order did not set off the whole-layer prefetch", scanRun+1)
	}
	settle(t, l, uniqueChunks(l))
}

// TestPrefetchAutoWaitsForQuiet: the whole-layer prefetch that a quarter
// of the layer read sets off starts only once reads have paused for
// autoQuiet, as a container start's do; reads that never pause get it
// after autoWait.
func TestPrefetchAutoWaitsForQuiet(t *testing.T) {
	r := rand.New(rand.NewPCG(49, 50))
	var ents []tarEntry
	for i := range 40 {
		ents = append(ents, reg(fmt.Sprintf("f%02d", i), randBytes(r, 5000)))
	}
	tarData := makeTar(t, ents)
	b := buildBlob(t, tarData, testFormats[1].opts)
	open := func(quiet, wait time.Duration) (*Layer, func()) {
		l, _ := openBuilt(t, b, WithFetchWindow(0), WithReadAhead(0))
		l.autoQuiet, l.autoWait = quiet, wait
		l.Prefetch(PrefetchAuto)
		i := 39
		// Backwards, so that the reads are no scan (TestPrefetchAutoScan).
		next := func() {
			readSequential(t, l, fmt.Sprintf("f%02d", i), 5000)
			i--
		}
		for l.demanded.Load() < l.blob.Size()/autoShare {
			next()
		}
		return l, next
	}

	l, next := open(300*time.Millisecond, time.Minute)
	for range 6 { // reads every 100 ms: never quiet for 300 ms
		time.Sleep(100 * time.Millisecond)
		next()
		if n := l.Stats().Prefetches; n != 0 {
			t.Fatalf("%d prefetch windows while reads went on; want none before they pause", n)
		}
	}
	settle(t, l, uniqueChunks(l))
	if l.Stats().Prefetches == 0 {
		t.Error("reads paused, and the whole-layer prefetch did not start")
	}

	// A scan ends the wait.
	l, _ = open(time.Minute, time.Minute)
	for i := range scanRun + 1 {
		readSequential(t, l, fmt.Sprintf("f%02d", i), 5000)
	}
	settle(t, l, uniqueChunks(l))

	l, next = open(time.Minute, 300*time.Millisecond)
	start := time.Now()
	for l.Stats().Prefetches == 0 {
		if time.Since(start) > 3*time.Second {
			t.Fatal("reads that never paused kept the whole-layer prefetch from starting past autoWait")
		}
		time.Sleep(50 * time.Millisecond)
		next()
	}
	settle(t, l, uniqueChunks(l))
}
