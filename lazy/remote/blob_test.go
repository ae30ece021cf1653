package remote

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// setup pushes a random image to a registry behind f and resolves it.
func setup(t *testing.T, f *faulty, size, layers int64, opts ...Option) (*Image, map[string][]byte) {
	t.Helper()
	host := newRegistry(t, f.wrap)
	pushed := pushRandom(t, host+"/test/img:v1", size, layers)
	img := resolve(t, host+"/test/img:v1", opts...)
	f.enabled.Store(true)
	return img, layerBytes(t, pushed)
}

func firstLayer(t *testing.T, img *Image) *Blob {
	t.Helper()
	b, err := img.Layer(0)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReadAtRandomRanges(t *testing.T) {
	img, want := setup(t, newFaulty(0), 64<<10, 3)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range img.Layers() {
		b, _ := img.Layer(i)
		blob := want[b.Digest()]
		if b.Size() != int64(len(blob)) {
			t.Fatalf("layer %d: Size %d, want %d", i, b.Size(), len(blob))
		}
		for range 50 {
			off := rng.Int64N(b.Size())
			p := make([]byte, 1+rng.IntN(32<<10))
			n, err := b.ReadAt(t.Context(), p, off)
			wantN := min(len(p), len(blob)-int(off))
			if n != wantN || (n < len(p)) != (err == io.EOF) || (err != nil && err != io.EOF) {
				t.Fatalf("ReadAt(%d, %d) = %d, %v; want %d", len(p), off, n, err, wantN)
			}
			if !bytes.Equal(p[:n], blob[off:off+int64(n)]) {
				t.Fatalf("ReadAt(%d, %d): bytes differ", len(p), off)
			}
		}
	}
}

func TestReadAtEdges(t *testing.T) {
	img, _ := setup(t, newFaulty(0), 4096, 1)
	b := firstLayer(t, img)
	p := make([]byte, 10)
	if n, err := b.ReadAt(t.Context(), p, b.Size()); n != 0 || err != io.EOF {
		t.Errorf("at Size: %d, %v; want 0, EOF", n, err)
	}
	if n, err := b.ReadAt(t.Context(), nil, 0); n != 0 || err != nil {
		t.Errorf("empty p: %d, %v", n, err)
	}
	if _, err := b.ReadAt(t.Context(), p, -1); !errors.Is(err, ErrRange) {
		t.Errorf("negative offset: %v, want ErrRange", err)
	}
	if n, err := b.ReadAt(t.Context(), p, b.Size()-3); n != 3 || err != io.EOF {
		t.Errorf("across the end: %d, %v; want 3, EOF", n, err)
	}
	if s := b.Stats(); s.Requests != 1 || s.BytesFetched != 3 {
		t.Errorf("stats %+v, want one 3-byte request", s)
	}
}

// TestReadAtFaults is the acceptance test: a registry that spoils a
// fifth of blob requests in every way we know still yields exact bytes.
func TestReadAtFaults(t *testing.T) {
	f := newFaulty(0.2, status(500), status(502), status(503), status(429),
		reset, lieLength, cutBody, shiftRange, dropRange)
	img, want := setup(t, f, 256<<10, 4, fast()...)
	for i := range img.Layers() {
		b, _ := img.Layer(i)
		checkBlob(t, b, want[b.Digest()], 8<<10)
		if s := b.Stats(); s.Failures > 0 && s.LastError == nil {
			t.Errorf("layer %d: %d failures but no last error", i, s.Failures)
		}
	}
	if f.spoiled.Load() == 0 {
		t.Fatal("no request was spoiled")
	}
	t.Logf("%d blob requests, %d spoiled", f.gets.Load(), f.spoiled.Load())
}

func TestReadAtWholeBodyAnswer(t *testing.T) {
	img, want := setup(t, newFaulty(1, dropRange), 32<<10, 1)
	b := firstLayer(t, img)
	checkBlob(t, b, want[b.Digest()], 4<<10)
	if s := b.Stats(); s.BytesFetched <= b.Size() || s.Failures != 0 {
		t.Errorf("stats %+v: want whole bodies read, no failures", s)
	}
}

// TestReadAtFailureEnds checks that a registry failing every blob request
// gives the right error, in bounded time, after the right number of tries.
func TestReadAtFailureEnds(t *testing.T) {
	quick := []Option{WithBackoff(time.Millisecond, 5*time.Millisecond), WithRetries(3)}
	tests := []struct {
		name     string
		fault    fault
		opts     []Option
		kind     error
		requests int64 // sent, as Stats counts them; 0: don't check
		exact    bool  // and the registry saw exactly as many
	}{
		{"500", status(500), quick, ErrUnavailable, 4, true},
		{"429", status(429), quick, ErrUnavailable, 4, true},
		// Go's transport resends a GET once by itself when a reused
		// connection dies before answering, so the registry sees more.
		{"reset", reset, quick, ErrUnavailable, 4, false},
		{"cut body", cutBody, quick, ErrBadResponse, 4, true},
		{"wrong range", shiftRange, quick, ErrBadResponse, 4, true},
		{"404", status(404), quick, ErrNotFound, 1, true},
		{"403", status(403), quick, ErrUnauthorized, 1, true},
		{"416", status(416), quick, ErrRange, 1, true},
		{"budget", status(503), append(quick, WithRetries(1000), WithRetryBudget(300*time.Millisecond)), ErrUnavailable, 0, false},
		// A request given up on may never reach the handler.
		{"hang", hang, append(quick, WithRequestTimeout(100*time.Millisecond)), context.DeadlineExceeded, 4, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFaulty(1, tt.fault)
			img, _ := setup(t, f, 8<<10, 1, tt.opts...)
			b := firstLayer(t, img)
			start := time.Now()
			_, err := b.ReadAt(t.Context(), make([]byte, 100), 1)
			if elapsed := time.Since(start); elapsed > 3*time.Second {
				t.Errorf("took %v", elapsed)
			}
			checkReadError(t, err, tt.kind, b.Digest())
			if tt.name == "budget" && !strings.Contains(err.Error(), "retry budget") {
				t.Errorf("%v does not say the budget ran out", err)
			}
			if tt.exact && f.gets.Load() != tt.requests {
				t.Errorf("%d requests, want %d", f.gets.Load(), tt.requests)
			}
			if s := b.Stats(); s.LastError == nil || (tt.requests != 0 && s.Requests != tt.requests) {
				t.Errorf("stats %+v, want %d requests and a last error", s, tt.requests)
			}
		})
	}
}

func checkReadError(t *testing.T, err error, kind error, digest string) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) || !errors.Is(err, kind) {
		t.Fatalf("got %v, want an *Error of kind %v", err, kind)
	}
	if e.Digest != digest || e.Off != 1 || e.Len != 100 {
		t.Errorf("error names %s %d+%d, want %s 1+100", e.Digest, e.Off, e.Len, digest)
	}
	if !strings.Contains(err.Error(), digest) || !strings.Contains(err.Error(), "bytes 1-100") {
		t.Errorf("message %q lacks the digest or range", err)
	}
}

func TestReadAtMissingBlob(t *testing.T) {
	img, _ := setup(t, newFaulty(0), 1024, 1)
	b := img.Blob(Descriptor{Digest: "sha256:" + strings.Repeat("ab", 32), Size: 1000})
	_, err := b.ReadAt(t.Context(), make([]byte, 100), 1)
	checkReadError(t, err, ErrNotFound, b.Digest())
	if _, err := img.Layer(1); !errors.Is(err, ErrNotFound) {
		t.Errorf("Layer(1) of 1: %v", err)
	}
}

// gate holds the blob GETs for range hold until released, counting them.
type gate struct {
	next    http.Handler
	hold    string
	arrived chan struct{} // one send per request
	release chan struct{}
	count   atomic.Int64
}

func newGate(hold string) *gate {
	return &gate{hold: hold, arrived: make(chan struct{}, 1024), release: make(chan struct{})}
}

func (g *gate) wrap(next http.Handler) http.Handler {
	g.next = next
	return g
}

func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !isBlobGet(r) || r.Header.Get("Range") != g.hold {
		g.next.ServeHTTP(w, r)
		return
	}
	g.count.Add(1)
	g.arrived <- struct{}{}
	select {
	case <-g.release:
	case <-r.Context().Done():
		return
	}
	g.next.ServeHTTP(w, r)
}

func TestReadAtDeduplicates(t *testing.T) {
	g := newGate("bytes=1000-5095")
	host := newRegistry(t, g.wrap)
	pushed := pushRandom(t, host+"/test/img:v1", 64<<10, 1)
	img := resolve(t, host+"/test/img:v1")
	want := layerBytes(t, pushed)

	b := firstLayer(t, img)
	var wg sync.WaitGroup
	results := make([][]byte, 32)
	for i := range results {
		wg.Go(func() {
			results[i] = make([]byte, 4096)
			if _, err := b.ReadAt(t.Context(), results[i], 1000); err != nil {
				t.Error(err)
			}
		})
	}
	<-g.arrived
	for b.Stats().Reads < 32 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // the last callers join the flight
	close(g.release)
	wg.Wait()
	if n := g.count.Load(); n != 1 {
		t.Errorf("%d requests for 32 identical reads, want 1", n)
	}
	for i, r := range results {
		if !bytes.Equal(r, want[b.Digest()][1000:5096]) {
			t.Fatalf("reader %d: bytes differ", i)
		}
	}
}

// slow keeps every blob GET busy for a while and records how many overlap.
type slow struct {
	next     http.Handler
	inFlight atomic.Int64
	maxSeen  atomic.Int64
}

func (s *slow) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !isBlobGet(r) {
		s.next.ServeHTTP(w, r)
		return
	}
	// Counted only until the answer starts: a client may read a small
	// body whole, release its slot and send the next request before this
	// handler has returned, which would look like one request too many.
	n := s.inFlight.Add(1)
	for m := s.maxSeen.Load(); n > m; m = s.maxSeen.Load() {
		if s.maxSeen.CompareAndSwap(m, n) {
			break
		}
	}
	time.Sleep(20 * time.Millisecond)
	s.inFlight.Add(-1)
	s.next.ServeHTTP(w, r)
}

func TestReadAtBoundsInFlight(t *testing.T) {
	s := &slow{}
	host := newRegistry(t, func(next http.Handler) http.Handler { s.next = next; return s })
	// Two images of one registry, read at once, share its bound. Both are
	// resolved first: manifest and config requests are not bounded.
	type reader struct {
		b    *Blob
		want []byte
	}
	var readers []reader
	for _, repo := range []string{"/test/img:v1", "/other/img:v2"} {
		pushed := pushRandom(t, host+repo, 64<<10, 1)
		img := resolve(t, host+repo, WithMaxInFlight(2))
		b := firstLayer(t, img)
		readers = append(readers, reader{b, layerBytes(t, pushed)[b.Digest()]})
	}
	var wg sync.WaitGroup
	for _, r := range readers {
		wg.Go(func() { checkBlob(t, r.b, r.want, 4<<10) })
	}
	wg.Wait()
	if m := s.maxSeen.Load(); m != 2 {
		t.Errorf("at most %d requests in flight to the registry, want 2", m)
	}
}

func TestReadAtCallerGivesUp(t *testing.T) {
	f := newFaulty(1, hang)
	img, _ := setup(t, f, 4096, 1, WithRequestTimeout(300*time.Millisecond), WithRetries(0))
	b := firstLayer(t, img)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := b.ReadAt(ctx, make([]byte, 100), 1)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 200*time.Millisecond {
		t.Errorf("got %v after %v, want the caller's deadline at once", err, time.Since(start))
	}
}

func TestBackoff(t *testing.T) {
	b := &Blob{c: &client{opts: &options{minBackoff: time.Millisecond, maxBackoff: 4 * time.Millisecond}}}
	start := time.Now()
	if !b.backoff(t.Context(), 0, 150*time.Millisecond) || time.Since(start) < 150*time.Millisecond {
		t.Errorf("Retry-After not honoured: waited %v", time.Since(start))
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	start = time.Now()
	if b.backoff(ctx, 0, time.Hour) || time.Since(start) > 100*time.Millisecond {
		t.Error("a Retry-After past the budget should fail at once")
	}
	for _, tt := range []struct {
		h    string
		want time.Duration
	}{{"", 0}, {"3", 3 * time.Second}, {"-1", 0}, {"soon", 0}, {"Mon, 02 Jan 2006 15:04:05 GMT", 0}} {
		if got := parseRetryAfter(tt.h); got != tt.want {
			t.Errorf("Retry-After %q = %v, want %v", tt.h, got, tt.want)
		}
	}
}

// TestReadAtSharedFetchOutlivesCaller: the caller that started a fetch
// giving up does not fail the others waiting for the same range.
func TestReadAtSharedFetchOutlivesCaller(t *testing.T) {
	g := newGate("bytes=1000-5095")
	host := newRegistry(t, g.wrap)
	pushed := pushRandom(t, host+"/test/img:v1", 64<<10, 1)
	b := firstLayer(t, resolve(t, host+"/test/img:v1"))

	ctx, cancel := context.WithCancel(t.Context())
	first := make(chan error, 1)
	go func() {
		_, err := b.ReadAt(ctx, make([]byte, 4096), 1000)
		first <- err
	}()
	<-g.arrived
	second := make(chan []byte, 1)
	go func() {
		p := make([]byte, 4096)
		if _, err := b.ReadAt(t.Context(), p, 1000); err != nil {
			t.Error(err)
		}
		second <- p
	}()
	for b.Stats().Reads < 2 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // the second caller joins the flight
	cancel()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Errorf("first caller: %v, want context.Canceled", err)
	}
	close(g.release)
	if p := <-second; !bytes.Equal(p, layerBytes(t, pushed)[b.Digest()][1000:5096]) {
		t.Error("second caller: bytes differ")
	}
	if n := g.count.Load(); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
}
