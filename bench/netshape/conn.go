package netshape

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// chunkSize is the most one read takes from a socket. A direction's queue
// is counted in chunks of this size.
const chunkSize = 32 << 10

// bufPool recycles chunk buffers across connections, so an idle relay
// holds none and a busy one allocates only what its queues hold.
var bufPool = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

// errAborted ends a wait cut short by the connection's abort.
var errAborted = errors.New("netshape: connection aborted")

// The two directions of a connection; they index Relay.paces and conn.pipes.
const (
	up   = 0 // client → target
	down = 1 // target → client
)

// conn is one relayed connection: two independent pipes, one per
// direction, each with a reader and a writer goroutine.
type conn struct {
	client, server *net.TCPConn
	pipes          [2]*pipe
	done           chan struct{} // closed by abort
	once           sync.Once
	direct         bool // a link with no delay and no rate: copied as it comes
}

func newConn(r *Relay, client, server *net.TCPConn, accepted time.Time) (*conn, error) {
	// Nagle would hold back small writes the link model has already
	// timed; the delay is the relay's to add, not the kernel's.
	client.SetNoDelay(true)
	server.SetNoDelay(true)
	c := &conn{client: client, server: server, done: make(chan struct{}), direct: r.link.RTT == 0 && r.link.Rate == 0}
	upGate, downGate := accepted, accepted
	if r.opts.handshake {
		// On a real link connect() returns one RTT after it starts, and
		// the server's accept() half an RTT after that; nothing can be
		// sent before.
		upGate = accepted.Add(r.link.RTT)
		downGate = upGate.Add(r.link.oneWay())
	}
	var err error
	if c.pipes[up], err = newPipe(client, server, upGate, r, up); err != nil {
		return nil, err
	}
	if c.pipes[down], err = newPipe(server, client, downGate, r, down); err != nil {
		c.pipes[up].clock.close()
		return nil, err
	}
	return c, nil
}

// run relays until both directions have ended, then closes both sockets.
func (c *conn) run() {
	var wg sync.WaitGroup
	if c.direct {
		for _, p := range c.pipes {
			wg.Go(func() {
				if err := p.copyDirect(); err != nil {
					c.abort()
				}
			})
		}
		wg.Wait()
		c.abort()
		for _, p := range c.pipes {
			p.clock.close()
		}
		return
	}
	for _, p := range c.pipes {
		wg.Add(2)
		go func() { defer wg.Done(); p.read(c.done) }()
		go func() {
			defer wg.Done()
			if err := p.write(); err != nil {
				c.abort()
			}
		}()
	}
	wg.Wait()
	c.abort()
	for _, p := range c.pipes {
		p.drop()
		p.clock.close()
	}
}

// abort closes both sockets, which ends every blocked read and write, and
// wakes every waiting goroutine.
func (c *conn) abort() {
	c.once.Do(func() {
		close(c.done)
		for _, p := range c.pipes {
			p.clock.interrupt()
		}
		c.client.Close()
		c.server.Close()
	})
}

// chunk is bytes read from the source, stamped with when they were read.
type chunk struct {
	buf *[]byte
	n   int
	at  time.Time
}

// pipe is one direction of a connection: a delay line. The reader stamps
// each chunk with its arrival time and queues it; the writer releases it
// no earlier than max(arrival, gate) + delay, then paces it through the
// link's shared pacer. The queue is bounded by slots: when the writer
// falls behind, the reader stops reading and the source's TCP window
// closes, as it would behind a real bottleneck.
type pipe struct {
	src, dst  *net.TCPConn
	gate      time.Time // nothing counts as sent before this (handshake)
	delay     time.Duration
	pace      *pacer
	quantum   int
	clock     *clock        // the writer's
	queue     chan chunk    // chunks read, not yet written; closed by the reader
	slots     chan struct{} // one token per chunk held by the reader, queue or writer
	delivered *atomic.Int64
	buffered  *atomic.Int64

	// Set by the reader before it closes queue, read by the writer after.
	end   error     // io.EOF for an orderly half-close
	endAt time.Time // when the end was read
}

func newPipe(src, dst *net.TCPConn, gate time.Time, r *Relay, dir int) (*pipe, error) {
	clk, err := newClock()
	if err != nil {
		return nil, err
	}
	n := max(1, r.opts.queue/chunkSize)
	delivered := &r.stats.up
	if dir == down {
		delivered = &r.stats.down
	}
	pace := r.paces[dir]
	return &pipe{src: src, dst: dst, gate: gate, delay: r.link.oneWay(), pace: pace,
		quantum: pace.quantum(), clock: clk, queue: make(chan chunk, n), slots: make(chan struct{}, n),
		delivered: delivered, buffered: &r.stats.buffered}, nil
}

// read moves bytes from src into the queue until src ends or the
// connection is aborted.
func (p *pipe) read(done <-chan struct{}) {
	defer close(p.queue)
	for {
		select {
		case p.slots <- struct{}{}:
		case <-done:
			p.end = errAborted
			return
		}
		buf := bufPool.Get().(*[]byte)
		n, err := p.src.Read(*buf)
		at := time.Now()
		if n > 0 {
			p.buffered.Add(int64(n))
			p.queue <- chunk{buf: buf, n: n, at: at} // never blocks: cap(queue) == cap(slots)
		} else {
			bufPool.Put(buf)
			<-p.slots
		}
		if err != nil {
			p.end, p.endAt = err, at
			return
		}
	}
}

// write delivers queued chunks to dst, then passes on how src ended: a
// half-close (after the delay, like any byte) or an error, which the
// caller turns into an abort of the whole connection.
func (p *pipe) write() error {
	for c := range p.queue {
		err := p.deliver(c)
		bufPool.Put(c.buf)
		<-p.slots
		if err != nil {
			return err
		}
	}
	if !errors.Is(p.end, io.EOF) {
		return p.end
	}
	if err := p.clock.sleepUntil(p.releaseAt(p.endAt)); err != nil {
		return err
	}
	return p.dst.CloseWrite()
}

// deliver writes one chunk once its delay has passed, a quantum at a time
// as the link's rate allows. Bytes leave the buffered count as they are
// handed to dst, so a receiver that has them never sees them counted.
func (p *pipe) deliver(c chunk) error {
	b := (*c.buf)[:c.n]
	defer func() { p.buffered.Add(-int64(len(b))) }() // what an error left undelivered
	eligible := p.releaseAt(c.at)
	if err := p.clock.sleepUntil(eligible); err != nil {
		return err
	}
	for len(b) > 0 {
		piece := b[:min(len(b), p.quantum)]
		if err := p.clock.sleepUntil(p.pace.book(eligible, time.Now(), len(piece))); err != nil {
			return err
		}
		b = b[len(piece):]
		p.buffered.Add(-int64(len(piece)))
		n, err := p.dst.Write(piece)
		p.delivered.Add(int64(n))
		if err != nil {
			return err
		}
	}
	return nil
}

// releaseAt is the earliest time bytes read at `at` may reach the other
// side.
func (p *pipe) releaseAt(at time.Time) time.Time {
	if at.Before(p.gate) {
		at = p.gate
	}
	return at.Add(p.delay)
}

// copyDirect relays a direction of a link with no delay and no rate limit
// (Loopback) in one goroutine, reading and writing in turn: the delay
// line's hand-off between two goroutines would add scheduling latency to
// every request on a busy machine, which no real loopback has.
func (p *pipe) copyDirect() error {
	buf := bufPool.Get().(*[]byte)
	defer bufPool.Put(buf)
	for {
		n, err := p.src.Read(*buf)
		if n > 0 {
			w, werr := p.dst.Write((*buf)[:n])
			p.delivered.Add(int64(w))
			if werr != nil {
				return werr
			}
		}
		if errors.Is(err, io.EOF) {
			return p.dst.CloseWrite()
		}
		if err != nil {
			return err
		}
	}
}

// drop discards what an aborted connection still had queued. Both the
// reader and the writer have returned, so the queue is closed.
func (p *pipe) drop() {
	for c := range p.queue {
		p.buffered.Add(-int64(c.n))
		bufPool.Put(c.buf)
	}
}
