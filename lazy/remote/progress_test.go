package remote

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"testing"
)

// readProgress reads [off, off+n) with ReadAtProgress and checks what it
// reports: counts that only grow, the last one n, and the bytes each count
// covers already right when it is reported (they must never change after).
func readProgress(t *testing.T, b *Blob, blob []byte, off, n int64) (int, error) {
	t.Helper()
	p := make([]byte, n)
	var last int64
	got, err := b.ReadAtProgress(t.Context(), p, off, func(k int64) {
		if k <= last || k > n {
			t.Errorf("progress %d after %d, of %d", k, last, n)
		}
		if !bytes.Equal(p[:k], blob[off:off+k]) {
			t.Errorf("range %d+%d: bytes reported at %d are wrong", off, n, k)
		}
		last = k
	})
	if err == nil && (got != int(n) || last != n) {
		t.Errorf("range %d+%d: %d bytes, progress to %d, and no error", off, n, got, last)
	}
	if err == nil && !bytes.Equal(p, blob[off:off+n]) {
		t.Errorf("range %d+%d: bytes differ", off, n)
	}
	return got, err
}

// TestReadAtProgressFaults: against a registry that spoils a third of blob
// requests, ReadAtProgress still gives exact bytes, and what it reported
// on the way was right when reported.
func TestReadAtProgressFaults(t *testing.T) {
	f := newFaulty(0.3, status(500), status(503), reset, lieLength, cutBody, dropRange)
	img, want := setup(t, f, 256<<10, 2, fast()...)
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range img.Layers() {
		b, _ := img.Layer(i)
		blob := want[b.Digest()]
		for range 30 {
			off := rng.Int64N(b.Size() - 1)
			n := 1 + rng.Int64N(min(64<<10, b.Size()-off))
			if _, err := readProgress(t, b, blob, off, n); err != nil {
				t.Fatalf("range %d+%d: %v", off, n, err)
			}
		}
	}
	if f.spoiled.Load() == 0 {
		t.Fatal("no request was spoiled")
	}
}

// TestReadAtProgressResumes: a body cut after two thirds is not fetched
// again: the retry asks for the rest only.
func TestReadAtProgressResumes(t *testing.T) {
	var mu sync.Mutex
	var ranges []string
	cutFirst := func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		mu.Lock()
		ranges = append(ranges, r.Header.Get("Range"))
		first := len(ranges) == 1
		mu.Unlock()
		if first {
			cutBody(w, r, next)
			return
		}
		next.ServeHTTP(w, r)
	}
	img, want := setup(t, newFaulty(1, cutFirst), 64<<10, 1, fast()...)
	b := firstLayer(t, img)
	off, n := int64(1000), int64(30000)
	if _, err := readProgress(t, b, want[b.Digest()], off, n); err != nil {
		t.Fatal(err)
	}
	cut := off + n*2/3
	wantRanges := []string{fmt.Sprintf("bytes=%d-%d", off, off+n-1), fmt.Sprintf("bytes=%d-%d", cut, off+n-1)}
	if fmt.Sprint(ranges) != fmt.Sprint(wantRanges) {
		t.Errorf("ranges asked %v, want %v", ranges, wantRanges)
	}
	if s := b.Stats(); s.BytesFetched != n {
		t.Errorf("%d bytes fetched for a %d-byte range", s.BytesFetched, n)
	}
}

// TestReadAtProgressFailure: a range the registry never serves whole (each
// answer cut after two thirds of what was asked) ends with an *Error and the
// count of bytes that did arrive, every retry having resumed where the one
// before was cut; past the blob's end, io.EOF as ReadAt gives.
func TestReadAtProgressFailure(t *testing.T) {
	img, want := setup(t, newFaulty(1, cutBody), 64<<10, 1, fast()...)
	b := firstLayer(t, img)
	got, err := readProgress(t, b, want[b.Digest()], 0, 30000)
	var re *Error
	if !errors.As(err, &re) || got < 29000 || got >= 30000 {
		t.Errorf("always cut: %d bytes, %v; want 29000-29999 and an *Error", got, err)
	}
	p := make([]byte, 10)
	if n, err := b.ReadAtProgress(t.Context(), p, b.Size(), func(int64) {}); n != 0 || err != io.EOF {
		t.Errorf("at Size: %d, %v; want 0, EOF", n, err)
	}
}
