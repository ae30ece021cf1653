package netshape

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"testing"
	"time"
)

// echo writes back whatever it reads until the client half-closes.
func echo(c *net.TCPConn) {
	io.Copy(c, c)
	c.CloseWrite()
}

// ping writes one byte and waits for its echo, returning how long it took.
func ping(t *testing.T, c net.Conn) time.Duration {
	t.Helper()
	start := time.Now()
	if _, err := c.Write([]byte{'x'}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	return time.Since(start)
}

// The relay's delay is a floor: a round trip never takes less than the
// RTT, and a new connection's first one never less than two (handshake
// plus round trip). Only floors are asserted; the excess is logged.
func TestDelayIsNeverLess(t *testing.T) {
	const rtt = 30 * time.Millisecond
	target := startTCPServer(t, echo)
	for _, handshake := range []bool{true, false} {
		r := startRelay(t, target, Link{RTT: rtt}, WithHandshake(handshake))
		start := time.Now()
		c := dial(t, r.Addr())
		ping(t, c)
		// From before connecting: the handshake's RTT runs from accept.
		first := time.Since(start)
		floor := rtt
		if handshake {
			floor = 2 * rtt
		}
		t.Logf("handshake %v: connect + first round trip %v (floor %v)", handshake, first, floor)
		if first < floor {
			t.Errorf("handshake %v: first round trip %v, less than %v", handshake, first, floor)
		}
		for i := range 5 {
			d := ping(t, c)
			t.Logf("round trip %d: %v (floor %v)", i+2, d, rtt)
			if d < rtt {
				t.Errorf("round trip %d took %v, less than the RTT %v", i+2, d, rtt)
			}
		}
		if total := time.Since(start); total < floor+5*rtt {
			t.Errorf("6 round trips took %v, less than %v", total, floor+5*rtt)
		}
	}
}

// ttfb times one GET from before connecting to its first response byte.
func ttfb(t *testing.T, c *http.Client, url string) time.Duration {
	t.Helper()
	var start, first time.Time
	trace := &httptrace.ClientTrace{GotFirstResponseByte: func() { first = time.Now() }}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace),
		http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Range", "bytes=0-4095")
	start = time.Now()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusPartialContent {
		t.Fatalf("GET %s: %s, want 206", url, resp.Status)
	}
	return first.Sub(start)
}

// An HTTP Range GET over 100 Mbit/s + 20 ms: two RTTs to the first byte
// on a new connection, one on a kept-alive one.
func TestHTTPTimeToFirstByte(t *testing.T) {
	l := Link100M20ms
	r := startRelay(t, startBlobServer(t, blob(1<<20)), l)
	url := "http://" + r.Addr() + "/blob"
	c := newClient(t, true)
	for i, floor := range []time.Duration{2 * l.RTT, l.RTT, l.RTT} {
		d := ttfb(t, c, url)
		t.Logf("GET %d (new connection: %v): first byte after %v, floor %v", i+1, i == 0, d, floor)
		if d < floor {
			t.Errorf("GET %d: first byte after %v, less than %v", i+1, d, floor)
		}
	}
	if s := r.Stats(); s.Conns != 1 {
		t.Errorf("3 GETs on a kept-alive connection opened %d connections, want 1", s.Conns)
	}
}
