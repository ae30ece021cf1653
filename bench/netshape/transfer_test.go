package netshape

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"
)

// 50 MB each way through a 1 Gbit/s link arrive byte for byte, no faster
// than the link, and the relay's counters account for them.
func TestTransferIsByteExact(t *testing.T) {
	const size = 50 << 20
	data := blob(size)
	want := sha256.Sum256(data)
	l := Link1G2ms
	r := startRelay(t, startBlobServer(t, data), l)
	c := newClient(t, true)

	start := time.Now()
	got, n, err := get(context.Background(), c, "http://"+r.Addr()+"/blob")
	took := time.Since(start)
	if err != nil || n != size || got != want {
		t.Fatalf("download: %d bytes, sha256 %x, err %v; want %d bytes, %x", n, got, err, size, want)
	}
	checkRate(t, "download", n, took, l)

	start = time.Now()
	resp, err := c.Post("http://"+r.Addr()+"/upload", "application/octet-stream", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	took = time.Since(start)
	if err != nil || string(body) != fmt.Sprintf("%x %d", want, size) {
		t.Fatalf("upload: server saw %q (err %v), want %x %d", body, err, want, size)
	}
	checkRate(t, "upload", size, took, l)

	s := r.Stats()
	t.Logf("stats: %+v", s)
	if s.Down < size || s.Up < size || s.Buffered != 0 {
		t.Errorf("stats %+v: want Down and Up ≥ %d and nothing buffered", s, size)
	}
}

// 20 parallel downloads share one link's rate: together they get no more
// than the link, however many connections there are.
func TestConcurrentTransfersShareTheRate(t *testing.T) {
	const parallel, size = 20, 512 << 10
	data := blob(size)
	want := sha256.Sum256(data)
	l := Link100M20ms
	r := startRelay(t, startBlobServer(t, data), l)
	c := newClient(t, true)
	url := "http://" + r.Addr() + "/blob"

	var wg sync.WaitGroup
	took := make([]time.Duration, parallel)
	errs := make([]error, parallel)
	start := time.Now()
	for i := range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, n, err := get(context.Background(), c, url)
			took[i] = time.Since(start)
			if err == nil && (n != size || got != want) {
				err = fmt.Errorf("%d bytes, sha256 %x; want %d, %x", n, got, size, want)
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	total := time.Since(start)
	for i, err := range errs {
		if err != nil {
			t.Errorf("download %d: %v", i, err)
		}
	}
	checkRate(t, fmt.Sprintf("%d parallel downloads together", parallel), parallel*size, total, l)
	first, last := slicesMinMax(took)
	t.Logf("downloads finished between %v and %v; alone at the link's rate each takes %v",
		first.Round(time.Millisecond), last.Round(time.Millisecond),
		time.Duration(float64(size*8)/float64(l.Rate)*float64(time.Second)).Round(time.Millisecond))
	if s := r.Stats(); s.Conns < parallel {
		t.Errorf("%d parallel downloads used %d connections; the test needs one each", parallel, s.Conns)
	}
}

func slicesMinMax(d []time.Duration) (lo, hi time.Duration) {
	lo, hi = d[0], d[0]
	for _, v := range d {
		lo, hi = min(lo, v), max(hi, v)
	}
	return lo, hi
}

// One download alone, on its own connection, is held to the rate too.
func TestSingleTransferKeepsToTheRate(t *testing.T) {
	const size = 6 << 20
	data := blob(size)
	l := Link100M20ms
	r := startRelay(t, startBlobServer(t, data), l)
	c := newClient(t, false)
	req, _ := http.NewRequest(http.MethodGet, "http://"+r.Addr()+"/blob", nil)
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != size {
		t.Fatalf("read %d bytes, err %v; want %d", n, err, size)
	}
	checkRate(t, "download", n, time.Since(start), l)
}
