package remote

import (
	"context"
	"io"
	"strconv"
	"sync"

	"golang.org/x/sync/singleflight"
)

// Blob reads byte ranges of one blob from the registry. It is safe for
// concurrent use; see the package documentation for what a read does.
type Blob struct {
	c      *client
	digest string
	size   int64
	stats  stats
	flight singleflight.Group // one fetch per (offset, length) at a time

	mu       sync.Mutex // guards location
	location string     // where the registry last redirected to; "" to ask it
}

// Digest is the blob's digest, as the manifest names it.
func (b *Blob) Digest() string { return b.digest }

// Size is the blob's size in bytes, as the manifest says.
func (b *Blob) Size() int64 { return b.size }

// Stats returns a snapshot of the blob's counters.
func (b *Blob) Stats() Stats { return b.stats.snapshot() }

// ReadAt reads len(p) bytes at off, following io.ReaderAt: it returns
// len(p) and a nil error, or fewer bytes and an error, io.EOF when the blob
// ends before p is full (and for off >= Size). It never returns short data
// for lack of bytes from the network: a failed read returns 0 and an
// *Error. When ctx ends first, ReadAt returns at once with ctx's error; the
// fetch itself may go on for other callers of the same range.
func (b *Blob) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	n, ok, err := b.span(p, off)
	if !ok {
		return 0, err
	}
	data, err := b.shared(ctx, off, n)
	if err != nil {
		return 0, err
	}
	copy(p, data)
	return clipped(p, n)
}

// span checks a read of len(p) bytes at off: it returns how many of them
// the blob holds, or, with ok false, the answer to a read that needs no
// request.
func (b *Blob) span(p []byte, off int64) (n int64, ok bool, err error) {
	switch {
	case off < 0:
		return 0, false, &Error{Digest: b.digest, Off: off, Len: int64(len(p)), Kind: ErrRange}
	case len(p) == 0:
		return 0, false, nil
	case off >= b.size:
		return 0, false, io.EOF
	}
	return min(int64(len(p)), b.size-off), true, nil
}

// clipped is the answer to a read of p that got the n bytes the blob holds.
func clipped(p []byte, n int64) (int, error) {
	if n < int64(len(p)) {
		return int(n), io.EOF
	}
	return int(n), nil
}

// ReadAtProgress reads like ReadAt, but into p as the bytes arrive, calling
// progress (from the calling goroutine, never concurrently) with how many
// of p's bytes have arrived each time more do: a caller can use the start
// of a large range before its end is in. The bytes reported never change: a
// retry asks only for the rest. Unlike ReadAt it does not share a fetch
// with concurrent reads of the same range, and it runs on ctx: when ctx
// ends, so does the fetch, and ReadAtProgress returns the count of bytes
// that arrived with ctx's error. On any failure it returns that count and an
// *Error.
func (b *Blob) ReadAtProgress(ctx context.Context, p []byte, off int64, progress func(n int64)) (int, error) {
	n, ok, err := b.span(p, off)
	if !ok {
		return 0, err
	}
	b.stats.read()
	var got int64
	err = b.fill(ctx, p[:n], off, func(k int64) {
		got = k
		progress(k)
	})
	switch {
	case err != nil && ctx.Err() != nil:
		return int(got), &Error{Digest: b.digest, Off: off, Len: n, Kind: ctx.Err(), Cause: context.Cause(ctx)}
	case err != nil:
		return int(got), err
	}
	return clipped(p, n)
}

// shared joins the fetch of the same range already under way, or starts
// it. The fetch runs on a context detached from this caller's, bounded by
// the retry budget, so one caller giving up never fails the others.
func (b *Blob) shared(ctx context.Context, off, n int64) ([]byte, error) {
	b.stats.read()
	key := strconv.FormatInt(off, 10) + "+" + strconv.FormatInt(n, 10)
	fetchCtx := context.WithoutCancel(ctx)
	ch := b.flight.DoChan(key, func() (any, error) {
		return b.fetch(fetchCtx, off, n)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.([]byte), nil
	case <-ctx.Done():
		return nil, &Error{Digest: b.digest, Off: off, Len: n, Kind: ctx.Err(), Cause: context.Cause(ctx)}
	}
}

// url returns where to send the next request and whether it is a
// remembered redirect target rather than the registry.
func (b *Blob) url() (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.location != "" {
		return b.location, true
	}
	return b.c.blobURL(b.digest), false
}

// remember keeps a redirect target (typically a presigned storage URL) so
// later ranges skip the registry's redirect round trip.
func (b *Blob) remember(location string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.location = location
}

// forget drops location if it is still the remembered one, so the next
// request asks the registry for a fresh redirect.
func (b *Blob) forget(location string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.location == location {
		b.location = ""
	}
}
