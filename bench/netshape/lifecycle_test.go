package netshape

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Half-close passes through in both directions: the client's CloseWrite
// reaches the server as EOF while the server can still answer, and the
// server's CloseWrite reaches the client while the client can still send.
func TestHalfClose(t *testing.T) {
	l := Link{RTT: 10 * time.Millisecond, Rate: 200_000_000}
	t.Run("client first", func(t *testing.T) {
		// The server reads to EOF, then answers with what it read.
		target := startTCPServer(t, func(c *net.TCPConn) {
			h := sha256.New()
			n, _ := io.Copy(h, c)
			fmt.Fprintf(c, "%x %d", h.Sum(nil), n)
			c.CloseWrite()
		})
		c := dial(t, startRelay(t, target, l).Addr())
		data := blob(1 << 20)
		if _, err := c.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := c.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(c)
		if want := fmt.Sprintf("%x %d", sha256.Sum256(data), len(data)); err != nil || string(got) != want {
			t.Errorf("after CloseWrite the server answered %q (err %v), want %q", got, err, want)
		}
	})
	t.Run("server first", func(t *testing.T) {
		// The server greets, half-closes, then reads what the client sends.
		heard := make(chan string, 1)
		target := startTCPServer(t, func(c *net.TCPConn) {
			io.WriteString(c, "hello")
			c.CloseWrite()
			b, _ := io.ReadAll(c)
			heard <- string(b)
		})
		c := dial(t, startRelay(t, target, l).Addr())
		if got, err := io.ReadAll(c); err != nil || string(got) != "hello" {
			t.Fatalf("read %q to EOF (err %v), want hello", got, err)
		}
		if _, err := io.WriteString(c, "still here"); err != nil {
			t.Fatalf("write after the server's half-close: %v", err)
		}
		c.CloseWrite()
		select {
		case got := <-heard:
			if got != "still here" {
				t.Errorf("server heard %q after its half-close, want %q", got, "still here")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("server never saw the client's bytes and EOF")
		}
	})
}

// Close with transfers in flight and an idle connection open returns,
// cuts them all, and leaves nothing behind (goleak in TestMain checks the
// goroutines).
func TestCloseWithLiveConnections(t *testing.T) {
	data := blob(64 << 20) // minutes at 100 Mbit/s: still running at Close
	l := Link100M20ms
	r, err := Start(context.Background(), startBlobServer(t, data), l)
	if err != nil {
		t.Fatal(err)
	}
	idle := dial(t, r.Addr())
	c := newClient(t, true)
	var wg sync.WaitGroup
	errs := make([]error, 5)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, errs[i] = get(context.Background(), c, "http://"+r.Addr()+"/blob")
		}()
	}
	waitFor(t, "5 downloads under way", func() bool { return r.Stats().Down > 1<<20 })
	t.Logf("before Close: %+v", r.Stats())

	closed := make(chan error)
	go func() { closed <- r.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return within 10 s with live connections")
	}
	if g := relayGoroutines(); len(g) > 0 {
		t.Errorf("Close returned with %d relay goroutines still running:\n%s", len(g), strings.Join(g, "\n\n"))
	}
	wg.Wait()
	for i, err := range errs {
		if err == nil {
			t.Errorf("download %d of 64 MiB completed although the relay was closed", i)
		}
	}
	idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := idle.Read(make([]byte, 1)); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("idle connection after Close: read %d bytes, err %v; want it closed", n, err)
	}
	if conn, err := net.DialTimeout("tcp", r.Addr(), time.Second); err == nil {
		conn.Close()
		t.Error("the relay still accepts connections after Close")
	}
	if s := r.Stats(); s.Active != 0 || s.Buffered != 0 {
		t.Errorf("after Close: %+v, want no active connection and nothing buffered", s)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// Close does not wait for bytes in flight to serve their delay: with a
// 20 s RTT, a byte just written sleeps for 30 s in the relay, and Close
// must wake it.
func TestCloseInterruptsDelays(t *testing.T) {
	r, err := Start(context.Background(), startTCPServer(t, echo), Link{RTT: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, r.Addr())
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the byte to be queued", func() bool { return r.Stats().Buffered == 1 })
	closed := make(chan error)
	go func() { closed <- r.Close() }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return within 5 s while a byte was waiting out its delay")
	}
	if g := relayGoroutines(); len(g) > 0 {
		t.Errorf("Close returned with %d relay goroutines still running:\n%s", len(g), strings.Join(g, "\n\n"))
	}
}

// Cancelling Start's context shuts the relay down like Close.
func TestContextEndStopsTheRelay(t *testing.T) {
	target := startTCPServer(t, echo)
	ctx, cancel := context.WithCancel(context.Background())
	r, err := Start(ctx, target, Loopback)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c := dial(t, r.Addr())
	ping(t, c)
	cancel()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("connection after the context ended: err %v, want it closed", err)
	}
}

// A receiver that stops reading stops the sender: the relay holds at most
// one queue of the stalled direction, not the whole stream.
func TestBackpressureBoundsBuffering(t *testing.T) {
	const queue = 64 << 10
	var written atomic.Int64
	target := startTCPServer(t, func(c *net.TCPConn) {
		buf := blob(chunkSize)
		for {
			n, err := c.Write(buf)
			written.Add(int64(n))
			if err != nil {
				return
			}
		}
	})
	r := startRelay(t, target, Link{RTT: 2 * time.Millisecond}, WithQueue(queue))
	c := dial(t, r.Addr())
	// Wait until the server can write no more: its socket buffers, the
	// relay's and the relay's queue are full.
	last := int64(-1)
	waitFor(t, "the server to stall", func() bool {
		time.Sleep(200 * time.Millisecond)
		n := written.Load()
		stalled := n == last && n > 0
		last = n
		return stalled
	})
	s := r.Stats()
	t.Logf("stalled: server wrote %d bytes; relay %+v", last, s)
	if s.Buffered > queue {
		t.Errorf("relay buffers %d bytes of a stalled connection, more than its %d-byte queue", s.Buffered, queue)
	}
	// Reading again restarts the flow.
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, make([]byte, last+8<<20)); err != nil {
		t.Errorf("reading after the stall: %v", err)
	}
}

// A target that cannot be reached closes the client's connection and is
// counted.
func TestDialErrorClosesTheClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := ln.Addr().String()
	ln.Close() // nothing listens there now
	r := startRelay(t, target, Loopback)
	c := dial(t, r.Addr())
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err != io.EOF && !isReset(err) {
		t.Errorf("read from a relay whose target is down: %d bytes, err %v; want EOF or reset", n, err)
	}
	waitFor(t, "the dial error to be counted", func() bool { return r.Stats().Failed == 1 })
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && !op.Timeout()
}

// waitFor polls cond for up to 10 s, failing the test if it never holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// relayGoroutines returns the stacks of goroutines running relay code.
// goleak in TestMain waits for stragglers; this does not, so it shows
// whether Close really waited.
func relayGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var found []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if _, top, _ := strings.Cut(g, "\n"); strings.HasPrefix(top, "runtime.goexit1(") {
			// Returned from its function, only being torn down: its
			// "created by" line still names relay code (seen once in CI).
			continue
		}
		for _, fn := range []string{"netshape.(*Relay)", "netshape.(*conn)", "netshape.(*pipe)", "netshape.Start"} {
			if strings.Contains(g, fn) && !strings.Contains(g, "netshape.(*Relay).Close") {
				found = append(found, g)
				break
			}
		}
	}
	return found
}
