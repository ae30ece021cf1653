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
// sequential reader begins.
func (c *Content) sequential(start, end int64) {
	if end > start && c.last.Swap(end) == start {
		c.l.readAhead(c, end)
	}
}

// readAhead starts fetching, in the background, the first chunk of the file
// at or after pos that is neither stored nor under way (and the window that
// follows it), if that chunk lies within l.aheadDist compressed bytes of
// pos and a read-ahead slot is free. Chunks found ready are remembered in
// c.ahead, so that a sequential reader scans each chunk about once.
func (l *Layer) readAhead(c *Content, pos int64) {
	f := c.f
	if l.slots == nil || pos >= f.size {
		return
	}
	limit := f.find(pos).cOff + l.aheadDist
	i := f.index(max(pos, c.ahead.Load()))
	for ; i < len(f.chunks); i++ {
		ch := &f.chunks[i]
		if ch.cOff >= limit {
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
	select {
	case l.slots <- struct{}{}:
	default:
		return // enough read-ahead under way; a later read tries again
	}
	// The window is claimed here, before the reader's next read, which
	// would otherwise race the goroutine to it and fetch it as its own.
	w := l.claimAhead(&f.chunks[i])
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
