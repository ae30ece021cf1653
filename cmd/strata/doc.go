// Command strata is the command-line front end: it turns flags into the
// options of the library packages and runs them. It holds no logic of its
// own beyond checking its arguments and reporting errors as one line.
//
//	strata mount [--upper DIR] [--insecure] [--platform OS/ARCH] REF MOUNTPOINT
//	strata mount --layer DIR [--layer DIR ...] [--upper DIR] MOUNTPOINT
//	strata umount MOUNTPOINT
//
// Two process settings are its own, both measured on the machines strata
// runs on: GOGC is 50 unless the environment sets it (main.go), and a
// process that serves a mount advises its heap for transparent huge pages
// (lazy.AdviseHugeHeap), as a 4 KiB page fault there costs about 14 µs.
package main
