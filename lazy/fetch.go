package lazy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	digest "github.com/opencontainers/go-digest"
)

// chunkKey names a chunk's bytes wherever they lie in the blob. The size is
// part of it: a lying TOC may give one digest two sizes, and a waiter must
// never get a chunk shorter than it indexes.
type chunkKey struct {
	d    digest.Digest
	size int64
}

func keyOf(c *chunk) chunkKey { return chunkKey{c.digest, c.size} }

// call is one chunk being fetched, alone or as part of a window. data and
// err are set before done is closed, and never change after.
type call struct {
	done chan struct{}
	data []byte
	err  error
	w    *window // the fetch that owns the call
	i    int     // the call's chunk in w.chunks
}

// window is one fetch: the blob's range [off, end) read with one request,
// and the chunks claimed in it, the one a reader asked for first. Chunks
// inside the range that others fetch or the store holds are not decoded.
type window struct {
	off, end int64
	stream   bool // one chunk over the fetch window, read in pieces
	chunks   []*chunk
	calls    []*call

	// arrived is closed once the window's bytes are in buf (never for a
	// stream, nor when the read fails). From then on each chunk is
	// decoded by whoever takes it first (taken): the window's decoder, in
	// blob order, or a reader waiting for that very chunk, which need not
	// wait for the chunks before it. left counts the chunks not decoded
	// yet; whoever decodes the last one gives buf back.
	arrived chan struct{}
	buf     []byte
	taken   []atomic.Bool
	left    atomic.Int64
}

// claim returns c's bytes if the store has them, else the fetch of c under
// way, or makes the caller the owner of a new window starting at c (w is
// then non-nil, and cl is c's call in it). The store is asked under l.mu:
// a fetch Puts a chunk before its call leaves l.calls, so a chunk that
// arrives between a reader's first miss and its claim is found here, never
// fetched twice.
func (l *Layer) claim(c *chunk) (data []byte, cl *call, w *window) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if cl := l.calls[keyOf(c)]; cl != nil {
		return nil, cl, nil
	}
	if data, ok := l.stored(c); ok {
		return data, nil, nil
	}
	w = l.newWindow(c)
	return nil, w.calls[0], w
}

// claimAhead starts a read-ahead window of up to size compressed and raw
// decompressed bytes at c, unless c is stored or under way
// already.
func (l *Layer) claimAhead(c *chunk, size, raw int64) *window {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.calls[keyOf(c)] != nil || l.bad[keyOf(c)] || l.has(c) {
		return nil
	}
	return l.claimWindow(c, size, raw, crossFileShare)
}

// crossFileShare bounds how much of a fetch window may go to the files
// after the one being read (1/crossFileShare of it: 32 KiB of a 4 MiB
// window, a few small files): the rest of the file is what a reader most
// likely wants next; the next files in the layer only may be, and on a
// slow link every speculative byte costs. A program's start reads files
// here and there in a layer: python3 -c 'print(1)' in debian-python
// fetched 10.1 MB with a share of 1/8 (512 KiB a window), 5.2 MB with
// 1/128, 4.9 MB with none, in 15, 16 and 17 requests; its /app/main.py,
// 13.4, 5.8 and 5.3 MB in 25, 32 and 39. A reader that goes through the
// files in blob order is a scan, which prefetches the layer whole.
const crossFileShare = 128

// newWindow claims c and the chunks that follow it in the blob, up to the
// fetch window (of which at most 1/crossFileShare beyond c's file). l.mu is
// held.
func (l *Layer) newWindow(c *chunk) *window {
	return l.claimWindow(c, l.window, l.windowRaw, crossFileShare)
}

// claimWindow claims c and the chunks that follow it in the blob, up to size
// compressed bytes (and raw decompressed bytes, unless raw is 0), of which
// at most 1/share beyond c's file. A chunk stored already, claimed by
// another fetch (whose bytes are on their way) or known bad is left out:
// a small one (up to skipMax compressed bytes) is fetched along and not
// decoded, a bigger one ends the window. l.mu is held.
func (l *Layer) claimWindow(c *chunk, size, raw, share int64) *window {
	w := &window{off: c.cOff, end: c.cEnd, stream: c.cEnd-c.cOff > size, arrived: make(chan struct{})}
	l.add(w, c)
	if w.stream {
		return w
	}
	fileEnd := int64(-1) // where c's file ends in the blob, once the window passes it
	rawSum := c.size
	for _, n := range l.idx.order[c.seq+1:] {
		if rawSum += n.size; n.cEnd-c.cOff > size || raw > 0 && rawSum > raw {
			break
		}
		if n.off == 0 && fileEnd < 0 {
			fileEnd = w.end // n starts another file
		}
		if fileEnd >= 0 && n.cEnd-fileEnd > size/share {
			break // other files are a guess: take only a little of them
		}
		cl := l.calls[keyOf(n)]
		switch {
		case cl != nil && cl.w == w:
			// A repeat of a chunk of this window: decoded once.
		case cl != nil || l.bad[keyOf(n)] || l.has(n):
			if n.cEnd-n.cOff > skipMax {
				return w
			}
			continue // fetched along if a chunk past it is taken
		default:
			l.add(w, n)
		}
		w.end = n.cEnd
	}
	return w
}

// skipMax is the most compressed bytes of a chunk that a window fetches
// along, undecoded, rather than end there, when the chunk is stored
// already or on its way. Identical files (in one layer or across layers)
// store one chunk for all of them, so a layer's prefetch finds many such
// chunks among those it still needs: stopping at each one split the
// prefetch of debian-python's python layer into windows of a few KiB, one
// round trip each.
const skipMax = 64 << 10

func (l *Layer) add(w *window, c *chunk) {
	cl := &call{done: make(chan struct{}), w: w, i: len(w.chunks)}
	l.calls[keyOf(c)] = cl
	w.chunks = append(w.chunks, c)
	w.calls = append(w.calls, cl)
}

// fetch reads w and finishes every call in it. The chunk asked for is
// finished first; the others are decoded by a background goroutine, so that
// its reader does not wait for them, unless inline is set (the caller is a
// background goroutine already) or the layer is closed.
func (l *Layer) fetch(ctx context.Context, w *window, inline bool) {
	if w.stream {
		data, err := l.fetchChunk(ctx, w.chunks[0])
		l.finish(w.chunks[0], w.calls[0], data, err)
		return
	}
	buf := windowBuf(w.end - w.off)
	if err := readInto(ctx, l.data, w.off, buf); err != nil {
		releaseWindowBuf(buf)
		err = fmt.Errorf("chunks at %d-%d: %w", w.off, w.end-1, err)
		for i, c := range w.chunks {
			l.finish(c, w.calls[i], nil, err)
		}
		return
	}
	w.buf, w.taken = buf, make([]atomic.Bool, len(w.chunks))
	w.left.Store(int64(len(w.chunks)))
	close(w.arrived)
	l.decodeAt(w, 0)
	if len(w.chunks) == 1 {
		return
	}
	rest := func(context.Context) {
		for i := 1; i < len(w.chunks); i++ {
			l.decodeAt(w, i)
		}
	}
	if inline || !l.bg.spawn(rest) {
		rest(ctx)
	}
}

// decodeAt verifies chunk i of a window whose bytes have arrived, unless
// someone else has taken it, and finishes its call. Each chunk is verified
// on its own: a bad chunk fails alone, and the others of its window are
// still served.
func (l *Layer) decodeAt(w *window, i int) {
	if !w.taken[i].CompareAndSwap(false, true) {
		return
	}
	c := w.chunks[i]
	data, err := l.decodeChunk(bytes.NewReader(w.buf[c.cOff-w.off:c.cEnd-w.off]), c)
	if err != nil {
		l.markBad(c)
	}
	l.finish(c, w.calls[i], data, err)
	if w.left.Add(-1) == 0 {
		releaseWindowBuf(w.buf) // every chunk is decoded: nothing reads it again
	}
}

// await waits for cl's chunk; once its window's bytes have arrived, it
// decodes the chunk itself if the window's decoder has not come to it yet.
func (l *Layer) await(ctx context.Context, cl *call) error {
	select {
	case <-cl.done:
		return nil
	case <-cl.w.arrived:
		l.decodeAt(cl.w, cl.i)
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-cl.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// finish stores a verified chunk, then ends its call. The order matters to
// claim: once a call is gone from l.calls, its chunk is in the store (or the
// store dropped it).
func (l *Layer) finish(c *chunk, cl *call, data []byte, err error) {
	switch {
	case err == nil:
		l.stats.fetches.Add(1)
		put(l.store, c.digest, data)
	case !canceled(err): // a reader gone or a layer closed is not a failed fetch
		l.stats.failed(err)
	}
	l.mu.Lock()
	delete(l.calls, keyOf(c))
	if err == nil {
		delete(l.bad, keyOf(c))
	}
	l.mu.Unlock()
	cl.data, cl.err = data, err
	close(cl.done)
}

// markBad remembers a chunk whose bytes arrived but did not verify, so that
// neither read-ahead nor another reader's window fetches it again; only a
// read of the chunk itself does (the blob may have been served wrong once).
// It is called before the chunk's call ends, so that the chunk always looks
// busy to read-ahead, which keeps read-ahead from retrying it.
func (l *Layer) markBad(c *chunk) {
	l.mu.Lock()
	l.bad[keyOf(c)] = true
	l.mu.Unlock()
}

func canceled(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// stored returns c's bytes from the store.
func (l *Layer) stored(c *chunk) ([]byte, bool) {
	data, ok := l.store.Get(c.digest)
	return data, ok && int64(len(data)) == c.size
}

// presence is the optional ChunkStore method that tells whether a chunk is
// stored without loading it, for building windows cheaply.
type presence interface {
	Has(d digest.Digest) bool
}

func (l *Layer) has(c *chunk) bool {
	if p, ok := l.store.(presence); ok {
		return p.Has(c.digest)
	}
	_, ok := l.stored(c)
	return ok
}

// countingBlob counts the reads made for chunk data: one Range request
// each with lazy/remote.
type countingBlob struct {
	Blob
	n *atomic.Int64
}

func (b countingBlob) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	b.n.Add(1)
	return b.Blob.ReadAt(ctx, p, off)
}

// windowBufSize is the size of the buffers windows are fetched into, which
// windowBufs keeps for the next window: a fresh buffer costs a page fault
// per 4 KiB on its first write (or zeroing, when the heap reuses memory),
// as much as the copy into it. Every window but a stream's fits.
const windowBufSize = prefetchWindow

var windowBufs sync.Pool // of *[]byte, windowBufSize long

// windowBuf returns a buffer of n bytes for a window's compressed bytes.
func windowBuf(n int64) []byte {
	if n > windowBufSize {
		return make([]byte, n)
	}
	if p, _ := windowBufs.Get().(*[]byte); p != nil {
		return (*p)[:n]
	}
	return make([]byte, windowBufSize)[:n]
}

// releaseWindowBuf gives back a buffer from windowBuf once nothing reads
// it: decoded chunks are copies, never slices of it.
func releaseWindowBuf(b []byte) {
	if cap(b) == windowBufSize {
		b = b[:windowBufSize]
		windowBufs.Put(&b)
	}
}
