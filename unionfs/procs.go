package unionfs

import (
	"os"
	"runtime"
)

// spareProcs is how many Ps a FUSE server keeps beyond the runtime's
// default.
const spareProcs = 2

// SetServerProcs raises GOMAXPROCS by two, for a process that serves FUSE
// mounts, unless the environment sets GOMAXPROCS.
//
// go-fuse's readers wait for requests blocked in read(2) on /dev/fuse,
// each holding its P. When no P is idle, the runtime's sysmon takes a P
// blocked in a syscall back after 20 µs and hands it to another thread (a
// futex wake-up), and the reader must find a P again when its read
// returns: on these VMs, context switches on the path of every request.
// With Ps to spare the runtime leaves blocked readers their Ps. Measured
// on 2 cores, a warm read of every file of a 6,641-file image through the
// union (alternating runs, median of 10): futex calls 6.5k -> 1.0k, the
// server's CPU time 572 -> 381 ms, the reader's time 1.66 -> 1.49 s.
func SetServerProcs() {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + spareProcs)
	}
}
