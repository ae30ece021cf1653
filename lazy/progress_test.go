package lazy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"time"
)

// halfBlob is a progressive Blob that delivers the first half of every
// read, reports it, then holds the rest until the test lets go (or fails
// it, when fail is set).
type halfBlob struct {
	memBlob
	hold chan struct{}
	fail bool
}

var errHeld = errors.New("the rest of the window never came")

func (b *halfBlob) ReadAtProgress(ctx context.Context, p []byte, off int64, progress func(int64)) (int, error) {
	b.reads.Add(1)
	half := int64(len(p) / 2)
	copy(p[:half], b.data[off:])
	progress(half)
	select {
	case <-b.hold:
	case <-ctx.Done():
		return int(half), ctx.Err()
	}
	if b.fail {
		return int(half), errHeld
	}
	n := copy(p[half:], b.data[off+half:])
	progress(half + int64(n))
	if half+int64(n) < int64(len(p)) {
		return int(half) + n, io.EOF
	}
	return len(p), nil
}

// TestWindowServesArrivedChunks: a window's chunks are served as their
// bytes arrive. With the second half of a ten-chunk window held back, the
// chunks of its first half are read, each right; the rest wait for their
// bytes, and then come in the same request. When the rest fails instead,
// only the chunks it held fail, and a later read fetches them again.
func TestWindowServesArrivedChunks(t *testing.T) {
	r := rand.New(rand.NewPCG(51, 52))
	big := randBytes(r, 10_000)
	b := buildBlob(t, makeTar(t, []tarEntry{reg("big", big)}), buildOpts{zstd: true, chunkSize: 1000})
	for _, fail := range []bool{false, true} {
		hb := &halfBlob{memBlob: memBlob{data: b.blob}, hold: make(chan struct{}), fail: fail}
		l, err := Open(context.Background(), hb, b.annot, WithReadAhead(0))
		if err != nil {
			t.Fatal(err)
		}
		chunks := fileChunks(t, l, "big")
		hb.reads.Store(0)
		c, err := l.Open(context.Background(), "big")
		if err != nil {
			t.Fatal(err)
		}
		early := 0 // chunks wholly in the window's first half
		for early < len(chunks) && chunks[early].cEnd-chunks[0].cOff <= (chunks[len(chunks)-1].cEnd-chunks[0].cOff)/2 {
			early++
		}
		if early < 3 {
			t.Fatalf("only %d chunks in the first half", early)
		}
		served := make(chan struct{})
		go func() {
			defer close(served)
			for i := range early {
				readChunk(t, c, chunks[i], big, false, false)
			}
		}()
		select {
		case <-served:
		case <-time.After(10 * time.Second):
			close(hb.hold)
			t.Fatal("the chunks that arrived were not served before the rest of their window")
		}
		late := make(chan error, 1)
		go func() {
			p := make([]byte, chunks[early].size)
			_, err := c.ReadAt(p, chunks[early].off)
			if err == nil && !bytes.Equal(p, big[chunks[early].off:chunks[early].off+chunks[early].size]) {
				err = errors.New("wrong bytes")
			}
			late <- err
		}()
		select {
		case err := <-late:
			t.Fatalf("chunk %d served before its bytes came: %v", early, err)
		case <-time.After(50 * time.Millisecond):
		}
		close(hb.hold)
		err = <-late
		switch {
		case !fail && err != nil:
			t.Fatalf("chunk %d: %v", early, err)
		case fail && !errors.Is(err, errHeld):
			t.Fatalf("chunk %d of a failed window: %v, want %v", early, err, errHeld)
		}
		if n := hb.reads.Load(); n != 1 {
			t.Errorf("fail=%v: %d blob reads, want the window's one", fail, n)
		}
		if fail {
			// The late reader's chunk failed first; the window goes on
			// failing the chunks after it, and a reader that found one
			// of them in flight would share its failure, as it should.
			waitNoCalls(t, l)
			hb.fail = false // the blob serves again: the failed chunks are fetched anew
			readChunk(t, c, chunks[early], big, false, false)
			if n := hb.reads.Load(); n != 2 {
				t.Errorf("%d blob reads, want a second for the failed chunks", n)
			}
		}
		if got := readSequential(t, l, "big", 1000); !bytes.Equal(got, big) {
			t.Errorf("fail=%v: the whole file differs", fail)
		}
		l.Close()
	}
}

// TestPrefetchWaitsForReadersWindow: a reader's window is demand until its
// last byte is in, not only until the reader's own chunk is: a prefetch
// starts no window while the rest of it arrives (on a slow link the two
// would share the bandwidth the reader's next reads need).
func TestPrefetchWaitsForReadersWindow(t *testing.T) {
	r := rand.New(rand.NewPCG(53, 54))
	big := randBytes(r, 10_000)
	b := buildBlob(t, makeTar(t, []tarEntry{reg("big", big)}), buildOpts{zstd: true, chunkSize: 1000})
	hb := &halfBlob{memBlob: memBlob{data: b.blob}, hold: make(chan struct{})}
	l, err := Open(context.Background(), hb, b.annot, WithReadAhead(0), WithFetchWindow(6200))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	chunks := fileChunks(t, l, "big")
	hb.reads.Store(0)
	c, err := l.Open(context.Background(), "big")
	if err != nil {
		t.Fatal(err)
	}
	readChunk(t, c, chunks[0], big, false, false) // its window's second half is held
	l.Prefetch(PrefetchAll)
	time.Sleep(3 * demandQuiet)
	if n := hb.reads.Load(); n != 1 {
		t.Errorf("%d blob reads while the reader's window was arriving; want its one", n)
	}
	close(hb.hold)
	settle(t, l, int64(len(chunks)))
	if got := readSequential(t, l, "big", 1000); !bytes.Equal(got, big) {
		t.Error("the file differs")
	}
}

// waitNoCalls waits until l has no fetch in flight.
func waitNoCalls(t *testing.T, l *Layer) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		l.mu.Lock()
		n := len(l.calls)
		l.mu.Unlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d fetches still in flight after 10 s", n)
		}
	}
}
