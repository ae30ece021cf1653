// Command strata is the command-line front end: it turns flags into the
// options of the library packages and runs them. It holds no logic of its
// own beyond checking its arguments and reporting errors as one line.
//
//	strata mount [--upper DIR] [--insecure] [--platform OS/ARCH] REF MOUNTPOINT
//	strata mount --layer DIR [--layer DIR ...] [--upper DIR] MOUNTPOINT
//	strata umount MOUNTPOINT
package main
