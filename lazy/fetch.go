package lazy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
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

	// ready is closed once the chunk's bytes are in w.buf, or once the
	// window's read failed before they arrived (the call is then finished
	// already). Never for a stream's chunk.
	ready chan struct{}
}

// window is one fetch: the blob's range [off, end) read with one request,
// and the chunks claimed in it, the one a reader asked for first. Chunks
// inside the range that the store holds (or that are known bad) are not
// decoded.
type window struct {
	off, end int64
	stream   bool // one chunk over the fetch window, read in pieces
	chunks   []*chunk
	calls    []*call

	// buf receives the window's bytes as they arrive; each chunk's call
	// is made ready as soon as its bytes are in (next is the first chunk
	// not ready yet, kept by the reading goroutine alone). From then on
	// the chunk is decoded by whoever takes it first (taken): the
	// window's decoder, which follows the bytes in blob order, or a
	// reader waiting for that very chunk, which need not wait for the
	// chunks before it nor for the rest of the window. left counts the
	// chunks not finished, plus one for the read, which writes buf until
	// it returns; whoever brings it to zero gives buf back.
	buf   []byte
	next  int
	taken []atomic.Bool
	left  atomic.Int64
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
// at most 1/share beyond c's file. A chunk claimed by another fetch (whose
// bytes are on their way) ends the window. A chunk stored already or known
// bad is left out: a small one (up to skipMax compressed bytes) is fetched
// along and not decoded, a bigger one ends the window. l.mu is held.
func (l *Layer) claimWindow(c *chunk, size, raw, share int64) *window {
	w := &window{off: c.cOff, end: c.cEnd, stream: c.cEnd-c.cOff > size}
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
		case cl != nil:
			return w // on its way: its bytes are not fetched twice
		case l.bad[keyOf(n)] || l.has(n):
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
// already (or known bad). Identical files (in one layer or across layers)
// store one chunk for all of them, so a layer's prefetch finds many such
// chunks among those it still needs: stopping at each one split the
// prefetch of debian-python's python layer into windows of a few KiB, one
// round trip each. A chunk on its way in another window is not skipped so:
// its bytes would come twice, and a reader's window that went on past the
// read-ahead windows of its own file fetched them all again. That took
// python3 /app/main.py over 100 Mbit/s and 20 ms from 2.1 s to 3.0-3.2 s.
const skipMax = 64 << 10

func (l *Layer) add(w *window, c *chunk) {
	cl := &call{done: make(chan struct{}), ready: make(chan struct{}), w: w, i: len(w.chunks)}
	l.calls[keyOf(c)] = cl
	w.chunks = append(w.chunks, c)
	w.calls = append(w.calls, cl)
}

// fetch reads w and finishes every call in it. The read and a decoder that
// follows its bytes run apart, so that each chunk is decoded as soon as its
// bytes are in, while the rest of the window arrives. With inline (the
// caller is a background goroutine already: prefetch, read-ahead), the
// caller reads, and fetch returns once every call is finished. Otherwise
// both run in the background on the layer's context, so that a reader that
// gives up leaves the window to the others, and fetch returns at once: the
// caller awaits its call like any reader. On a closed layer, the caller
// does both.
func (l *Layer) fetch(ctx context.Context, w *window, inline bool) {
	if w.stream {
		data, err := l.fetchChunk(ctx, w.chunks[0])
		l.finish(w.chunks[0], w.calls[0], data, err)
		return
	}
	w.buf, w.taken = windowBuf(w.end-w.off), make([]atomic.Bool, len(w.chunks))
	w.left.Store(int64(len(w.chunks)) + 1)
	followed := make(chan struct{})
	if !l.bg.spawn(func(context.Context) { defer close(followed); l.follow(w) }) {
		l.read(ctx, w)
		l.follow(w)
		return
	}
	if inline {
		l.read(ctx, w)
		<-followed
		return
	}
	// A reader's window is demand until its last byte is in, not only
	// until the reader's chunk is: prefetch waits for reads to be quiet,
	// so as not to share the link with them.
	l.demand.begin()
	if !l.bg.spawn(func(ctx context.Context) { defer l.demand.end(); l.read(ctx, w) }) {
		l.read(ctx, w)
		l.demand.end()
	}
}

// read fills w.buf from the blob, making each chunk ready as its bytes
// arrive. When the read fails, it finishes with the error every chunk whose
// bytes did not arrive.
func (l *Layer) read(ctx context.Context, w *window) {
	arrived := func(n int64) {
		for w.next < len(w.chunks) && w.chunks[w.next].cEnd-w.off <= n {
			close(w.calls[w.next].ready)
			w.next++
		}
	}
	err := l.data.readProgress(ctx, w.buf, w.off, arrived)
	if err == nil {
		arrived(w.end - w.off) // all of it, in case a chunk lies out of order
	}
	if w.next < len(w.chunks) {
		err = fmt.Errorf("chunks at %d-%d: %w", w.off, w.end-1, err)
		for i := w.next; i < len(w.chunks); i++ {
			if w.taken[i].CompareAndSwap(false, true) {
				l.finish(w.chunks[i], w.calls[i], nil, err)
				w.release()
			}
			close(w.calls[i].ready)
		}
	}
	w.release()
}

// follow decodes w's chunks in blob order as their bytes arrive, but for
// those readers took, and returns once each is finished. It yields the
// processor after each chunk: decoding is CPU work with no system call in
// it, and two windows decoding at once would otherwise hold both of a
// small node's processors for Go's 10 ms time slice, while the goroutines
// that answer the kernel's requests (most of them served from the store in
// microseconds) wait for one. In a cold read of every file of
// debian-python through --kernel-overlay, the reads that waited more than
// 5 ms waited 0.92-1.07 s in all before this yield, 0.66-0.94 s after (4
// alternating runs).
func (l *Layer) follow(w *window) {
	for i, cl := range w.calls {
		<-cl.ready
		l.decodeAt(w, i)
		runtime.Gosched()
	}
}

// release gives w.buf back once the read and every chunk are done with it.
func (w *window) release() {
	if w.left.Add(-1) == 0 {
		releaseWindowBuf(w.buf)
	}
}

// decodeAt verifies chunk i of a window, whose bytes have arrived, unless
// someone else has taken it, and finishes its call. Each chunk is verified
// on its own: a bad chunk fails alone, and the others of its window are
// still served.
func (l *Layer) decodeAt(w *window, i int) {
	if !w.taken[i].CompareAndSwap(false, true) {
		return
	}
	c := w.chunks[i]
	data, err := l.decodeBytes(w.buf[c.cOff-w.off:c.cEnd-w.off], c)
	if err != nil {
		l.markBad(c)
	}
	l.finish(c, w.calls[i], data, err)
	w.release()
}

// await waits for cl's chunk; once the chunk's bytes have arrived, it
// decodes the chunk itself if the window's decoder has not come to it yet.
func (l *Layer) await(ctx context.Context, cl *call) error {
	select {
	case <-cl.done:
		return nil
	case <-cl.ready:
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

// progressive is the optional Blob method that fills p in order and reports
// how many of its bytes have arrived, as they do (lazy/remote's Blob has
// it): a window's chunks are then served as they arrive, not once the whole
// window has. The bytes reported must never change.
type progressive interface {
	ReadAtProgress(ctx context.Context, p []byte, off int64, progress func(n int64)) (int, error)
}

// readProgress fills p with the blob's bytes at off, calling arrived with
// how many of them are in, as they come if the blob can tell, else once at
// the end.
func (b countingBlob) readProgress(ctx context.Context, p []byte, off int64, arrived func(n int64)) error {
	pb, ok := b.Blob.(progressive)
	if !ok {
		if err := readInto(ctx, b, off, p); err != nil {
			return err
		}
		arrived(int64(len(p)))
		return nil
	}
	b.n.Add(1)
	n, err := pb.ReadAtProgress(ctx, p, off, arrived)
	switch {
	case n == len(p):
		return nil
	case err == nil || err == io.EOF:
		return fmt.Errorf("bytes %d-%d: %w", off, off+int64(len(p))-1, io.ErrUnexpectedEOF)
	}
	return fmt.Errorf("bytes %d-%d: %w", off, off+int64(len(p))-1, err)
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
