package lazy

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Prefetch says which of a layer's bytes to fetch in the background, before
// anything reads them.
type Prefetch uint8

const (
	// PrefetchNone fetches nothing ahead of reads.
	PrefetchNone Prefetch = iota
	// PrefetchLandmark fetches the files an eStargz layer puts before its
	// .prefetch.landmark: those its builder saw read when the image
	// started. A layer without that landmark fetches nothing.
	PrefetchLandmark
	// PrefetchAll fetches the whole layer, in blob order (so the landmark's
	// files first), in large windows. It is for a chunk store on disk that
	// can hold the layer: a workload that reads most of an image then gets
	// it at about the speed of a full pull instead of one round trip per
	// window read.
	PrefetchAll
	// PrefetchAuto is PrefetchLandmark, then PrefetchAll once readers have
	// fetched 1/autoShare of the layer's blob: a container start reads a
	// few percent of an image and gets only that, while a build, a scan
	// or a copy that reads most of it gets the rest at link speed, in
	// large windows, without waiting for its reads to pause.
	PrefetchAuto
)

// autoShare: PrefetchAuto fetches the whole layer once readers have
// fetched a quarter of it.
const autoShare = 4

// The prefetch of one layer keeps prefetchParallel windows of up to
// prefetchWindow compressed bytes in flight: one arriving while the other
// is decoded and stored, which keeps a link busy, while leaving most of an
// image's request slots (lazy/remote's in-flight bound) to reads that a
// process is waiting for.
const (
	prefetchWindow   = 8 << 20
	prefetchParallel = 2
)

// demand counts the fetches that readers are waiting for (their own
// windows, the windows they wait on, and read-ahead for a sequential
// reader) across the layers of one image. A prefetch starts no window while
// any is under way, nor until reads have been quiet for demandQuiet: a
// container starting up reads in bursts with short pauses between them, and
// gets the link to itself; the prefetch fills the longer pauses.
type demand struct {
	n    atomic.Int64
	last atomic.Int64 // when the last demand fetch ended, Unix nanoseconds
}

// newDemand starts the quiet period at once: a mount is made to be read,
// and its first reads come a moment after it.
func newDemand() *demand {
	d := new(demand)
	d.last.Store(time.Now().UnixNano())
	return d
}

func (d *demand) begin() { d.n.Add(1) }
func (d *demand) end() {
	d.last.Store(time.Now().UnixNano())
	d.n.Add(-1)
}

// demandQuiet is how long reads must have waited for no fetch before a
// prefetch window starts; demandPoll is how often a waiting prefetch looks.
const (
	demandQuiet = 150 * time.Millisecond
	demandPoll  = 5 * time.Millisecond
)

// idle waits until no demand fetch is under way and none has ended for
// demandQuiet, or ctx ends.
func (d *demand) idle(ctx context.Context) error {
	return d.quiet(ctx, demandQuiet, 0, nil)
}

// quiet waits until no demand fetch is under way and none has ended for
// period, or for at most max (0: no bound), or until done (if not nil)
// says so, or until ctx ends.
func (d *demand) quiet(ctx context.Context, period, max time.Duration, done func() bool) error {
	start := time.Now()
	for d.n.Load() > 0 || time.Since(time.Unix(0, d.last.Load())) < period {
		if max > 0 && time.Since(start) >= max || done != nil && done() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(demandPoll):
		}
	}
	return ctx.Err()
}

// The whole-layer prefetch that readers set off by fetching a quarter of a
// layer starts once their fetches have paused for autoQuiet (or after
// autoWait at most): such reads are mostly a container starting, in
// bursts, and a prefetch that does not yield would take the CPU and the
// link from what is left of the start, and from a second container
// started right after it, which reads only what the first fetched. A
// scan's prefetch starts at once: the scan wants the whole layer (and a
// scan that begins while the prefetch waits ends the wait).
const (
	autoQuiet = time.Second
	autoWait  = 5 * time.Second
)

// Prefetch starts fetching, in the background, the chunks mode asks for
// that are neither stored nor under way, and returns at once. Reads go on
// meanwhile and come first: no prefetch window starts while a reader waits
// for a fetch in any layer of the image (see OpenImage), and a read of a
// chunk that a prefetch window holds waits for that window rather than
// fetching it again. Close stops the prefetch.
func (l *Layer) Prefetch(mode Prefetch) {
	if mode == PrefetchAuto {
		l.auto.Store(true)
	}
	limit := l.prefetchLimit(mode)
	if limit <= 0 {
		return
	}
	l.bg.spawn(func(ctx context.Context) { l.prefetch(ctx, limit, true) })
}

// scanRun is how many windows in a row readers must fetch, each starting
// where the one before ended (or a little past it) and in another file,
// for PrefetchAuto to take them for a scan of the layer in blob order, as
// a walk of the tree reading every file is (tar order is the tree's
// order). A container start jumps about the layer; a scan would otherwise
// pay a round trip per window until it had fetched a quarter of the layer.
const scanRun = 4

// noteDemand counts the compressed bytes of a window fetched for readers,
// and starts the whole-layer prefetch of PrefetchAuto once they reach
// 1/autoShare of the blob, or once scanRun windows that readers asked for
// (scan: not read-ahead within a file) have followed each other in the
// blob. That prefetch does not yield to reads: they are what asked for it.
func (l *Layer) noteDemand(w *window, scan bool) {
	if !l.auto.Load() {
		return
	}
	var run int64
	if scan {
		// A step of a scan is a window that starts at about the end of
		// the one before and moves on to another file: it starts a file,
		// or the one before reached into the file it continues. A window
		// that goes on with the file of the one before neither adds a
		// step nor ends the run: a file read chunk by chunk is no scan,
		// but a scan reads big files too.
		spans := false
		for _, c := range w.chunks[1:] {
			spans = spans || c.off == 0
		}
		last, lastSpans := l.lastDemand.Swap(w.end), l.lastSpans.Swap(spans)
		switch {
		case w.off < last || w.off-last > l.window:
			run = 1
			l.demandRun.Store(1)
		case w.chunks[0].off == 0 || lastSpans:
			run = l.demandRun.Add(1)
		default:
			run = l.demandRun.Load()
		}
	}
	if run >= scanRun {
		l.sawScan()
	}
	if l.demanded.Add(w.end-w.off) < l.blob.Size()/autoShare && !l.scanned() {
		return
	}
	l.autoOnce.Do(func() {
		l.bg.spawn(func(ctx context.Context) {
			if l.demand.quiet(ctx, l.autoQuiet, l.autoWait, l.scanned) != nil {
				return
			}
			l.prefetch(ctx, l.blob.Size(), false)
		})
	})
}

// prefetchLimit is the blob offset below which mode prefetches chunks.
func (l *Layer) prefetchLimit(mode Prefetch) int64 {
	switch mode {
	case PrefetchAll:
		return l.blob.Size()
	case PrefetchLandmark, PrefetchAuto:
		return l.idx.landmark
	}
	return 0
}

// prefetch walks the chunks below limit in blob order, fetching each run
// of missing ones as a window; with yield, a window starts only when reads
// are quiet.
func (l *Layer) prefetch(ctx context.Context, limit int64, yield bool) {
	slots := make(chan struct{}, prefetchParallel)
	var wg sync.WaitGroup
	defer wg.Wait()
	order := l.idx.order
	for i := 0; i < len(order) && order[i].cOff < limit; {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		if yield && l.demand.idle(ctx) != nil {
			return
		}
		w := l.claimPrefetch(order[i], limit)
		if w == nil {
			<-slots
			i++
			continue
		}
		for i < len(order) && order[i].cOff < w.end {
			i++
		}
		l.stats.prefetches.Add(1)
		wg.Go(func() {
			defer func() { <-slots }()
			l.fetch(ctx, w, true)
			if l.scanned() {
				l.sawScan() // the scan's prefetch goes on
			}
		})
	}
}

// claimPrefetch starts a prefetch window at c that ends by limit, unless c
// is stored, under way or known bad. The window does not favour c's file:
// every file below the limit is wanted.
func (l *Layer) claimPrefetch(c *chunk, limit int64) *window {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.calls[keyOf(c)] != nil || l.bad[keyOf(c)] || l.has(c) {
		return nil
	}
	return l.claimWindow(c, min(max(prefetchWindow, l.window), limit-c.cOff), 0, 1)
}
