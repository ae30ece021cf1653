// Package netshape puts a network link between a client and a server on
// one machine: a TCP relay that adds round-trip time and limits bandwidth,
// so that benchmarks can compare lazy fetching (many small HTTP Range
// requests, each paying the RTT) with full pulls (few large transfers,
// paying the rate) over realistic links, not only over loopback. The
// kernel here has no sch_netem, so the shaping is done in user space.
//
//	r, err := netshape.Start(ctx, "127.0.0.1:5000", netshape.Link100M20ms)
//	defer r.Close()
//	// clients use r.Addr() where they used 127.0.0.1:5000
//
// # The model: a delay line behind a shared wire
//
// Each relayed connection has two directions, up (client → target) and
// down (target → client), and each direction is a pipe with a reader and
// a writer goroutine:
//
//	src ──read──▶ [queue: chunks stamped with arrival time] ──writer──▶ dst
//	                                                           │
//	                     wait until max(arrival, gate) + RTT/2 ┘
//	                     then book the bytes on the shared wire of this
//	                     direction and write them when the wire is done
//
// What each part imitates, and what it guarantees:
//
//   - Delay. A byte read at time a is written no earlier than a + RTT/2,
//     so a request and its response together pay one RTT. The delay is a
//     lower bound: a late timer or a busy wire only adds to it.
//   - Rate. Each direction of the link is one pacer (a virtual clock)
//     shared by every connection through the relay, like the one cable
//     all of a client's connections share: 20 parallel downloads over a
//     100 Mbit/s link get about 5 Mbit/s each, not 100 each. Bytes are
//     booked on the wire from when their delay was served, so a writer
//     that wakes late loses no capacity, and an idle wire grants no
//     burst. Over any interval T at most Rate × (T + 10 ms) bits are
//     delivered: the 10 ms is how much a writer stalled by a busy machine
//     may catch up, as a receive buffer lets an application stalled on a
//     real link read a burst. Writes are cut into pieces of about 1 ms of
//     the rate (4–32 KiB), each delivered when the wire has finished
//     sending it, so connections interleave finely and a transfer's last
//     byte arrives when it would on the wire.
//   - Timing. Writers sleep on a timerfd each, which the Go netpoller
//     wakes within about 50 µs; the runtime's own timers would round
//     sub-millisecond sleeps up to a millisecond, doubling a 1 Gbit/s,
//     2 ms link's RTT. So a connection holds four file descriptors
//     (two sockets, two timers).
//   - Handshake. A new connection's first bytes count as sent no earlier
//     than one RTT after the relay accepted it (the client's connect()
//     on a real link returns after SYN and SYN-ACK), and the target's no
//     earlier than 1.5 RTT (when a real server's accept() returns). So
//     an HTTP GET on a new connection sees its first response byte two
//     RTTs after connecting, as curl's time_starttransfer would show on a
//     real link. WithHandshake(false) turns this off.
//   - Backpressure. A pipe's queue holds at most WithQueue bytes
//     (default twice the bandwidth-delay product of one direction, at
//     least 256 KiB: 100 Mbit/s × 10 ms and 1 Gbit/s × 1 ms are both
//     125 KB). When the queue is full the reader stops reading, the
//     kernel's socket buffers fill and the sender's TCP window closes, so
//     a slow receiver slows the sender and the relay's memory stays
//     bounded: queue × 2 × connections at most, allocated only as queues
//     fill. Since at most a queue's worth of a connection is in flight,
//     one connection's throughput is at most queue / (RTT/2), which the
//     default keeps above the rate.
//   - Ends. An orderly end (EOF) is passed on as a half-close
//     (CloseWrite) after the same delay as the bytes before it, and the
//     other direction goes on; a connection ends when both directions
//     have. A read or write error aborts the connection: both sockets
//     are closed and what is queued is dropped.
//
// Both sockets of a connection have TCP_NODELAY set, so the kernel adds
// no delay of its own to small writes.
//
// # What it does not model
//
//   - TCP congestion control: a real connection starts with a window of
//     about 10 segments (14 KB) and doubles it each RTT (slow start), so
//     it needs several RTTs to reach 100 Mbit/s at 20 ms, and Linux
//     restarts slow start on a connection idle for more than an RTO
//     (tcp_slow_start_after_idle). Here a connection gets its share of
//     the rate from its first byte. That flatters many short transfers
//     (Range requests) over few long ones (a full pull) on slow,
//     long links; a benchmark should say so next to its figures.
//   - Loss, reordering, jitter and retransmission: the link is perfect.
//   - Header overhead: Rate counts payload bytes, so it is the goodput of
//     the link (a real 100 Mbit/s Ethernet carries about 94 Mbit/s of
//     TCP payload).
//   - Refused or slow connects: the client's connect() to the relay
//     succeeds at once; if the target cannot be dialled the client sees
//     its connection closed, not ECONNREFUSED.
//   - The relay's own cost: loopback sockets on both sides and a copy
//     through user space. On a busy machine the relay can fall short of
//     a fast link's rate (and add delay); bench/cmd/linkcheck measures
//     what a link actually delivers here, and a benchmark should quote
//     its figures beside the link's.
//
// # Lifecycle and concurrency
//
// Start listens on 127.0.0.1:0 and returns at once. The relay's
// goroutines: one accepts, one waits for the end of Start's ctx, and one
// per accepted client dials the target (a Relay has one target) and then
// owns that connection, waiting for its four pipe goroutines. Close (or
// the end of Start's ctx) closes the listener, closes both sockets of
// every connection and interrupts every sleeping writer; Close returns
// only when every goroutine has ended, so leak checkers see none. The
// Relay's mutex guards only the set of open connections and the closed
// flag; each pacer has its own mutex guarding its clock; counters are
// atomic, and Stats reads them without a lock (each figure is exact, the
// set is not one instant's).
package netshape
