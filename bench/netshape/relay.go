package netshape

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// ErrBadOption is returned by Start for an option given an invalid value.
var ErrBadOption = errors.New("netshape: bad option")

// Option configures a relay.
type Option func(*options) error

type options struct {
	queue       int           // bytes per direction per connection; 0 = Link.defaultQueue
	handshake   bool          // charge one RTT for the TCP handshake
	dialTimeout time.Duration // for connecting to the target
}

func (o *options) setDefaults() {
	o.handshake = true
	o.dialTimeout = 10 * time.Second
}

// WithQueue bounds how many bytes one direction of one connection may hold
// between reading them and delivering them (default: twice the link's
// bandwidth-delay product, at least 256 KiB; 1 MiB for a link with a delay
// and no rate). A connection's throughput cannot exceed queue / (RTT/2).
func WithQueue(bytes int) Option {
	return func(o *options) error {
		if bytes < chunkSize {
			return fmt.Errorf("%w: queue %d bytes, want at least %d", ErrBadOption, bytes, chunkSize)
		}
		o.queue = bytes
		return nil
	}
}

// WithHandshake says whether a new connection pays one RTT for its TCP
// handshake before its first byte may leave (default true).
func WithHandshake(on bool) Option {
	return func(o *options) error { o.handshake = on; return nil }
}

// Stats counts what crossed a relay since it started.
type Stats struct {
	Conns    int64 // connections accepted
	Active   int64 // connections open now
	Failed   int64 // accepted connections dropped before relaying: target unreachable, or no timerfd
	Up       int64 // bytes delivered client → target
	Down     int64 // bytes delivered target → client
	Buffered int64 // bytes read and not yet delivered, now, all connections
}

type counters struct {
	conns, active, failed, up, down, buffered atomic.Int64
}

// Relay is a running shaping relay. Its methods are safe for concurrent use.
type Relay struct {
	link   Link
	target string
	opts   options
	ln     *net.TCPListener
	paces  [2]*pacer // indexed by direction: up, down
	stats  counters
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine the relay starts
	once   sync.Once      // shutdown

	mu     sync.Mutex // guards closed and conns
	closed bool
	conns  map[*conn]struct{}
}

// Start listens on 127.0.0.1 (a free port) and relays every connection it
// accepts to target (host:port) through link. The relay runs until Close
// is called or ctx is done; Close must be called either way to wait for
// its goroutines.
func Start(ctx context.Context, target string, link Link, opts ...Option) (*Relay, error) {
	if err := link.validate(); err != nil {
		return nil, err
	}
	r := &Relay{link: link, target: target, conns: map[*conn]struct{}{}}
	r.opts.setDefaults()
	for _, opt := range opts {
		if err := opt(&r.opts); err != nil {
			return nil, err
		}
	}
	if r.opts.queue == 0 {
		r.opts.queue = link.defaultQueue()
	}
	r.paces = [2]*pacer{newPacer(link.bytesPerSec()), newPacer(link.bytesPerSec())}
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, fmt.Errorf("netshape: listen: %w", err)
	}
	r.ln = ln
	rctx, cancel := context.WithCancel(ctx)
	r.cancel = cancel
	r.wg.Add(2)
	go r.acceptLoop(rctx)
	go func() { defer r.wg.Done(); <-rctx.Done(); r.shutdown() }()
	return r, nil
}

// Addr is the relay's listening address, host:port; clients connect here
// instead of to the target.
func (r *Relay) Addr() string { return r.ln.Addr().String() }

// Link is the link the relay imitates.
func (r *Relay) Link() Link { return r.link }

// Stats returns the relay's counters now.
func (r *Relay) Stats() Stats {
	s := &r.stats
	return Stats{Conns: s.conns.Load(), Active: s.active.Load(), Failed: s.failed.Load(),
		Up: s.up.Load(), Down: s.down.Load(), Buffered: s.buffered.Load()}
}

// Close stops accepting, cuts every open connection (bytes still queued
// are dropped) and returns once every goroutine of the relay has ended.
// Calling it again does nothing.
func (r *Relay) Close() error {
	r.cancel()
	r.shutdown()
	r.wg.Wait()
	return nil
}

// shutdown closes the listener and aborts every connection, once.
func (r *Relay) shutdown() {
	r.once.Do(func() {
		r.mu.Lock()
		r.closed = true
		conns := make([]*conn, 0, len(r.conns))
		for c := range r.conns {
			conns = append(conns, c)
		}
		r.mu.Unlock()
		r.ln.Close()
		for _, c := range conns {
			c.abort()
		}
	})
}

func (r *Relay) acceptLoop(ctx context.Context) {
	defer r.wg.Done()
	for {
		client, err := r.ln.AcceptTCP()
		if err != nil {
			// Closed by shutdown, or a listener failure no retry would
			// fix (Accept already retries EMFILE-like errors itself).
			r.shutdown()
			return
		}
		r.stats.conns.Add(1)
		r.wg.Add(1)
		go r.serve(ctx, client, time.Now())
	}
}

// serve dials the target for one accepted client and relays until both
// directions end.
func (r *Relay) serve(ctx context.Context, client *net.TCPConn, accepted time.Time) {
	defer r.wg.Done()
	d := net.Dialer{Timeout: r.opts.dialTimeout}
	nc, err := d.DialContext(ctx, "tcp", r.target)
	if err != nil {
		// The client sees its connection closed; a real refused connect
		// would fail connect() itself, which a relay that has already
		// accepted cannot imitate.
		r.stats.failed.Add(1)
		client.Close()
		return
	}
	c, err := newConn(r, client, nc.(*net.TCPConn), accepted)
	if err != nil {
		r.stats.failed.Add(1)
		client.Close()
		nc.Close()
		return
	}
	if !r.track(c) {
		c.abort()
		return
	}
	defer r.untrack(c)
	c.run()
}

// track registers c for shutdown; false if the relay is already closing.
func (r *Relay) track(c *conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.conns[c] = struct{}{}
	r.stats.active.Add(1)
	return true
}

func (r *Relay) untrack(c *conn) {
	r.mu.Lock()
	delete(r.conns, c)
	r.mu.Unlock()
	r.stats.active.Add(-1)
}
