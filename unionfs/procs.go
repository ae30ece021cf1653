package unionfs

import (
	"os"
	"runtime"
)

// spareProcs is how many Ps a FUSE server keeps beyond the runtime's
// default.
const spareProcs = 2

// SetServerProcs raises GOMAXPROCS by two, for a process that serves FUSE
// mounts, unless the environment sets GOMAXPROCS. It returns the value in
// force.
//
// go-fuse keeps as many goroutines as there are Ps (2 to 16) blocked in
// read(2) on /dev/fuse. When they hold every P, the runtime's sysmon takes
// each blocked P back within 20 µs and wakes a thread to run it, and keeps
// polling every 20 µs while it does: two context switches and a wake-up
// per request, on the request's path. With Ps to spare, a blocked reader
// keeps its P and sysmon stays idle. Measured on 2 cores (a warm read of
// every file of a 6,641-file image through the union, alternating runs):
// the server's CPU time 580 -> 380 ms, 28k -> 19k context switches, and
// the reader's time 1.71 -> 1.53 s, median of 8.
func SetServerProcs() int {
	if os.Getenv("GOMAXPROCS") != "" {
		return runtime.GOMAXPROCS(0)
	}
	n := runtime.GOMAXPROCS(0) + spareProcs
	runtime.GOMAXPROCS(n)
	return n
}
