package netshape

import (
	"sync"
	"time"
)

// maxCatchUp bounds how far in the past a booking may start. Bytes are
// booked from when they became eligible (their delay served), not from
// when their writer got round to them, so a writer that wakes late (some
// 50 µs usually, milliseconds on a loaded machine) loses no capacity: its
// bytes take the wire's next free slot, even one in the past, and go out
// at once. A writer stalled for longer catches up at most this much (2 ms
// proved too little on a loaded 2-core machine: a 100 Mbit/s link fell
// 3–20% short; a relay starved of CPU for longer still falls short, which
// bench/cmd/linkcheck shows). An idle wire grants no credit: fresh bytes become eligible now and are booked from now. So
// bytes delivered over any interval T stay under rate × (T + maxCatchUp),
// and a transfer never finishes sooner than the rate allows from when its
// first byte was eligible.
const maxCatchUp = 10 * time.Millisecond

// pacer is the capacity of one direction of the link, shared by every
// connection through the relay as a single serialising wire. It is a
// virtual clock: next is when the wire finishes sending everything booked
// so far; a writer books n bytes and may deliver them once the wire has
// finished with them. Bookings are first come, first served, so
// connections share the rate roughly equally.
type pacer struct {
	bytesPerSec float64 // fixed at creation; 0 means unlimited

	mu   sync.Mutex // guards next
	next time.Time
}

func newPacer(bytesPerSec float64) *pacer { return &pacer{bytesPerSec: bytesPerSec} }

// book reserves the wire for n bytes that became eligible at eligible and
// are offered at now, and returns when the wire has finished sending
// them; an unlimited pacer returns eligible.
func (p *pacer) book(eligible, now time.Time, n int) time.Time {
	if p.bytesPerSec == 0 {
		return eligible
	}
	cost := time.Duration(float64(n) / p.bytesPerSec * float64(time.Second))
	p.mu.Lock()
	defer p.mu.Unlock()
	start := p.next
	if eligible.After(start) {
		start = eligible // the wire was idle when these bytes arrived
	}
	if floor := now.Add(-maxCatchUp); start.Before(floor) {
		start = floor
	}
	p.next = start.Add(cost)
	return p.next
}

// quantum is the largest piece written at once: about a millisecond of the
// rate, so that at 100 Mbit/s one connection's 32 KiB chunk does not hold
// the wire for 2.6 ms while others wait, and bytes arrive as a stream
// rather than in coarse lumps.
func (p *pacer) quantum() int {
	const lo, hi = 4 << 10, chunkSize
	if p.bytesPerSec == 0 {
		return hi
	}
	return min(hi, max(lo, int(p.bytesPerSec/1000)))
}
