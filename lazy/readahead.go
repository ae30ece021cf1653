package lazy

import (
	"context"
	"sync"
)

// background owns a layer's goroutines: read-ahead fetches and the
// decoding of the rest of a reader's window. Close stops them and waits.
type background struct {
	// ctx is the layer's lifetime, not a request's: it ends at Close, which
	// is how a read-ahead blocked on the network is stopped.
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex // guards closed, and wg.Add against Close's wg.Wait
	closed bool
	wg     sync.WaitGroup
}

func newBackground() *background {
	ctx, cancel := context.WithCancel(context.Background())
	return &background{ctx: ctx, cancel: cancel}
}

// spawn runs fn on a new goroutine with the layer's context, unless the
// layer is closed.
func (b *background) spawn(fn func(ctx context.Context)) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.wg.Go(func() { fn(b.ctx) })
	return true
}

func (b *background) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.cancel()
	b.wg.Wait()
}

// Close stops the layer's background work (read-ahead) and waits for its
// goroutines to end. Reads still work after it, without read-ahead. It
// may be called more than once.
func (l *Layer) Close() error {
	l.bg.close()
	return nil
}

// sequential starts read-ahead when the read [start, end) began where the
// previous read of the file ended. A first read at 0 counts: that is how a
// sequential reader begins. It also keeps the length of the reader's run:
// the kernel sends a sequential reader's READs in parallel, so a read that
// lands near the last one, not right after it, does not end the run.
func (c *Content) sequential(start, end int64) {
	if end <= start {
		return
	}
	prev := c.last.Swap(end)
	if prev != start {
		if start < prev-c.l.window || start > prev+c.l.window {
			c.run.Store(0)
		}
		return
	}
	c.l.readAhead(c, end, c.run.Add(end-start))
}

// readAhead starts fetching, in the background, the first chunk of the file
// at or after pos that is neither stored nor under way (and the window that
// follows it), if that chunk lies within as many windows of pos as there are
// read-ahead slots and a slot is free. Chunks found ready are remembered in
// c.ahead, so that a sequential reader scans each chunk about once. A
// reader that has read aheadRamp windows' worth in a row gets windows of
// l.aheadMax (and at most l.aheadRaw decompressed): a long sequential read
// is what a large request serves best, and each request costs the
// registry CPU time of its own.
func (l *Layer) readAhead(c *Content, pos, run int64) {
	f := c.f
	if l.slots == nil || pos >= f.size {
		return
	}
	size, raw := l.window, l.windowRaw
	if run >= aheadRamp*l.window {
		size, raw = l.aheadMax, l.aheadRaw
	}
	// Read-ahead runs at most as many windows beyond pos as there are
	// slots, in compressed bytes. Where windows are bounded in what they
	// hold decompressed (a store of memory alone), it also runs at most
	// l.aheadRaw of the file's bytes beyond pos, stored chunks included:
	// a reader slower than its read-ahead must not have it fill the store
	// with chunks that are evicted before they are read.
	limit, rawLimit := f.find(pos).cOff+int64(cap(l.slots))*size, f.size
	if raw > 0 {
		rawLimit = pos + l.aheadRaw
	}
	i := f.index(max(pos, c.ahead.Load()))
	for ; i < len(f.chunks); i++ {
		ch := &f.chunks[i]
		if ch.cOff >= limit || ch.off >= rawLimit {
			return
		}
		if !l.busy(ch) {
			break
		}
	}
	if i == len(f.chunks) {
		c.ahead.Store(f.size)
		return
	}
	c.ahead.Store(f.chunks[i].off)
	if raw > 0 {
		// Wait for room for half a window rather than fetch a chunk per
		// read.
		room := rawLimit - f.chunks[i].off
		if room < raw/2 {
			return
		}
		raw = min(raw, room)
	}
	select {
	case l.slots <- struct{}{}:
	default:
		return // enough read-ahead under way; a later read tries again
	}
	// The window is claimed here, before the reader's next read, which
	// would otherwise race the goroutine to it and fetch it as its own.
	w := l.claimAhead(&f.chunks[i], size, raw)
	if w == nil {
		<-l.slots
		return
	}
	l.demand.begin() // a sequential reader will want it soon
	if !l.bg.spawn(func(ctx context.Context) { l.fetchAhead(ctx, w) }) {
		// Closed: end the calls, so that their readers fetch the chunks
		// themselves.
		for k, ch := range w.chunks {
			l.finish(ch, w.calls[k], nil, context.Canceled)
		}
		l.demand.end()
		<-l.slots
	}
}

// aheadRamp is how many windows' worth a reader reads in a row before its
// read-ahead windows grow to Layer.aheadMax.
const aheadRamp = 2

func (l *Layer) fetchAhead(ctx context.Context, w *window) {
	defer func() { <-l.slots }()
	defer l.demand.end()
	l.stats.readAheads.Add(1)
	l.noteDemand(w, false) // a file read in order is no scan of the layer
	l.fetch(ctx, w, true)
}

// busy reports a chunk stored, under way or known bad.
func (l *Layer) busy(c *chunk) bool {
	l.mu.Lock()
	_, ok := l.calls[keyOf(c)]
	ok = ok || l.bad[keyOf(c)]
	l.mu.Unlock()
	return ok || l.has(c)
}
