package netshape

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestParseLink(t *testing.T) {
	tests := []struct {
		in   string
		want Link
		err  bool
	}{
		{in: "loopback", want: Loopback},
		{in: "100M20ms", want: Link100M20ms},
		{in: "1g2ms", want: Link1G2ms},
		{in: "50M30ms", want: Link{Name: "50M30ms", RTT: 30 * time.Millisecond, Rate: 50_000_000}},
		{in: "1.5G500us", want: Link{Name: "1.5G500us", RTT: 500 * time.Microsecond, Rate: 1_500_000_000}},
		{in: "10K1s", want: Link{Name: "10K1s", RTT: time.Second, Rate: 10_000}},
		{in: "", err: true},
		{in: "fast", err: true},
		{in: "100M", err: true},
		{in: "100X20ms", err: true},
		{in: "100M-20ms", err: true},
	}
	for _, tc := range tests {
		got, err := ParseLink(tc.in)
		if tc.err {
			if !errors.Is(err, ErrBadLink) {
				t.Errorf("ParseLink(%q) = %+v, %v; want ErrBadLink", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseLink(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestDefaultQueueHoldsTwiceTheBDP(t *testing.T) {
	for _, l := range Links() {
		q := l.defaultQueue()
		bdp := l.bytesPerSec() * l.oneWay().Seconds()
		t.Logf("%s: one-way BDP %.0f bytes, queue %d bytes", l, bdp, q)
		if float64(q) < 2*bdp || q < 256<<10 {
			t.Errorf("%s: queue %d bytes, want ≥ 2 × %.0f and ≥ 256 KiB", l, q, bdp)
		}
	}
}

func TestStartRejectsBadInput(t *testing.T) {
	ctx := context.Background()
	if r, err := Start(ctx, "127.0.0.1:1", Link{RTT: -time.Millisecond}); !errors.Is(err, ErrBadLink) {
		t.Errorf("negative RTT: got %v, %v; want ErrBadLink", r, err)
	}
	if r, err := Start(ctx, "127.0.0.1:1", Link{Rate: -1}); !errors.Is(err, ErrBadLink) {
		t.Errorf("negative rate: got %v, %v; want ErrBadLink", r, err)
	}
	if r, err := Start(ctx, "127.0.0.1:1", Loopback, WithQueue(100)); !errors.Is(err, ErrBadOption) {
		t.Errorf("tiny queue: got %v, %v; want ErrBadOption", r, err)
	}
}

func TestPacer(t *testing.T) {
	cost := time.Millisecond // 1000 bytes at 1 MB/s
	start := time.Unix(1000, 0)
	p := newPacer(1e6)
	var done time.Time
	for range 1000 {
		done = p.book(start, start, 1000) // 1 MB offered at once
	}
	if want := start.Add(time.Second); done.Before(want) {
		t.Errorf("1 MB offered at once finishes at +%v, want ≥ +%v", done.Sub(start), want.Sub(start))
	}
	// After an idle spell there is no credit: the next bytes take their
	// full cost from when they are eligible.
	idle := done.Add(time.Second)
	if got := p.book(idle, idle, 1000); got != idle.Add(cost) {
		t.Errorf("after idle: finishes at +%v, want +%v", got.Sub(idle), cost)
	}
	// A writer waking late books from when its bytes were eligible, so
	// lateness up to maxCatchUp costs no capacity...
	late := idle.Add(cost + maxCatchUp/2)
	if got := p.book(idle, late, 1000); got != idle.Add(2*cost) {
		t.Errorf("late writer: finishes at +%v, want +%v", got.Sub(idle), 2*cost)
	}
	// ...and a stalled one catches up by no more than maxCatchUp.
	stalled := idle.Add(time.Second)
	if got := p.book(idle, stalled, 1000); got != stalled.Add(cost-maxCatchUp) {
		t.Errorf("stalled writer: finishes at now%v, want now%v", got.Sub(stalled), cost-maxCatchUp)
	}
	if q := p.quantum(); q != 4<<10 {
		t.Errorf("quantum at 8 Mbit/s = %d, want the 4 KiB floor", q)
	}
	if q := newPacer(0).quantum(); q != chunkSize {
		t.Errorf("unlimited quantum = %d, want %d", q, chunkSize)
	}
	if got := newPacer(0).book(start, idle, 1000); got != start {
		t.Errorf("unlimited pacer: %v, want the eligible time", got)
	}
}
