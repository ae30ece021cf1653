package netshape

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// clock puts one goroutine to sleep until a given time, precisely: it is
// a timerfd that the Go netpoller waits on like a socket.
//
// Why not time.Timer: the runtime's timers are run by a netpoller that
// blocks in epoll_pwait with a millisecond timeout, so a 200 µs sleep
// takes about 1 ms and a 1 ms one about 1.15 ms (measured on this
// machine). On a 1 Gbit/s, 2 ms link that would add up to a millisecond
// to each 1 ms one-way delay and stall pacing. A timerfd becoming readable
// wakes the poller at once: sleeps overshoot by about 50 µs, the kernel's
// default timer slack. Each pipe writer owns one clock (one file
// descriptor) and nothing else touches it but interrupt.
type clock struct {
	f   *os.File
	rc  syscall.RawConn
	buf [8]byte // the expiry count a read returns; unused
}

func newClock() (*clock, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("netshape: timerfd_create: %w", err)
	}
	// A non-blocking descriptor gives a pollable File: Read parks the
	// goroutine in the netpoller, and deadlines work.
	f := os.NewFile(uintptr(fd), "netshape-timer")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("netshape: timerfd: %w", err)
	}
	return &clock{f: f, rc: rc}, nil
}

// sleepUntil returns at when (or a few tens of µs after), at once if when
// has passed, or with errAborted once interrupt has been called.
func (c *clock) sleepUntil(when time.Time) error {
	d := time.Until(when)
	if d <= 0 {
		return nil
	}
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(d))}
	var serr error
	if err := c.rc.Control(func(fd uintptr) { serr = unix.TimerfdSettime(int(fd), 0, &spec, nil) }); err != nil {
		return errAborted // closed
	}
	if serr != nil {
		return fmt.Errorf("netshape: timerfd_settime: %w", serr)
	}
	if _, err := c.f.Read(c.buf[:]); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, os.ErrClosed) {
			return errAborted
		}
		return fmt.Errorf("netshape: timerfd read: %w", err)
	}
	return nil
}

// interrupt ends the current sleep and every later one with errAborted.
// It may be called from any goroutine, even after close.
func (c *clock) interrupt() { c.f.SetReadDeadline(time.Unix(1, 0)) }

func (c *clock) close() { c.f.Close() }
