package netshape

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// blob returns n deterministic pseudo-random bytes: incompressible, and
// any reordering or loss in the relay changes their hash.
func blob(n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{'n', 'e', 't', 's', 'h', 'a', 'p', 'e'}).Read(b)
	return b
}

// startBlobServer serves data at /blob (Range requests included) and
// answers a POST to /upload with the SHA-256 and length of its body.
// It returns the server's host:port.
func startBlobServer(t *testing.T, data []byte) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /blob", func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "blob", time.Time{}, bytes.NewReader(data))
	})
	mux.HandleFunc("POST /upload", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "%x %d", h.Sum(nil), n)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// startRelay starts a relay to target and closes it when the test ends.
func startRelay(t *testing.T, target string, l Link, opts ...Option) *Relay {
	t.Helper()
	r, err := Start(context.Background(), target, l, opts...)
	if err != nil {
		t.Fatalf("Start(%s): %v", l, err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// newClient is an HTTP client of its own, so its idle connections are
// closed when the test ends and goleak sees no reader goroutines.
func newClient(t *testing.T, keepAlive bool) *http.Client {
	tr := &http.Transport{DisableKeepAlives: !keepAlive, MaxIdleConnsPerHost: 64,
		DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: time.Minute}
}

// get fetches url and returns the SHA-256 and length of the body.
func get(ctx context.Context, c *http.Client, url string) ([32]byte, int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return [32]byte{}, 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return [32]byte{}, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return [32]byte{}, 0, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	return [32]byte(h.Sum(nil)), n, err
}

// bitsPerSec is the throughput of n bytes in d.
func bitsPerSec(n int64, d time.Duration) float64 { return float64(n) * 8 / d.Seconds() }

// checkRate fails the test if n bytes in d exceeded the link's rate by
// more than 10%. The relay guarantees at most rate × (d + 10 ms) whatever
// the load, so this cannot flake on a busy machine; falling short of the
// rate can, so that is only logged.
func checkRate(t *testing.T, what string, n int64, d time.Duration, l Link) {
	t.Helper()
	got := bitsPerSec(n, d)
	t.Logf("%s: %d bytes in %v = %.1f Mbit/s (link %s, %.2f× its rate)",
		what, n, d.Round(time.Millisecond), got/1e6, FormatRate(l.Rate), got/float64(l.Rate))
	if got > 1.1*float64(l.Rate) {
		t.Errorf("%s: %.1f Mbit/s, more than 1.1 × the link's %s", what, got/1e6, FormatRate(l.Rate))
	}
}

// startTCPServer accepts connections on 127.0.0.1 and runs handle on each
// in its own goroutine; the test's end closes the listener and waits for
// every handler.
func startTCPServer(t *testing.T, handle func(*net.TCPConn)) string {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []*net.TCPConn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() { defer wg.Done(); defer c.Close(); handle(c) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// dial connects to addr and closes the connection when the test ends.
func dial(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}
