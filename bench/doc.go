// Package bench holds strata's benchmarks and the pieces they share: timing
// external commands ([Time], [Shell]), condensing repeated runs
// ([Summarize]) and writing a report as JSON and Markdown ([Report]).
//
// # What the union benchmark measures
//
// Command unionbench (bench/cmd/unionbench) answers one question: what
// does merging layers through strata cost compared with the two other ways
// of getting the same tree, kernel overlayfs (the speed anchor, the thing
// strata imitates) and fuse-overlayfs (the FUSE peer)? It mounts the same
// two layers with each, runs the same operations on each in the same
// process run, and quotes strata's median time divided by each peer's.
// A ratio below 1 means strata is faster. Absolute seconds depend on the
// machine; ratios from one report do not.
//
// The layers are built once into a cache directory and reused:
//
//   - layer0: a copy of the first 20,000 regular files (each ≤ 16 MiB, with
//     their directories and symlinks) found walking /usr/share then
//     /usr/lib, so about 23,000 real entries of real sizes, plus one 1 GiB
//     file for the bulk scenarios;
//   - layer1: in overlayfs form, a few hundred files of layer0 rewritten,
//     a hundred deleted (whiteouts, char device 0/0), one directory made
//     opaque and a hundred new files, so each union does merging work;
//   - a tarball of 5,000 files taken from layer0, for untar.
//
// A fourth system, native, reads layer0 directly and writes into a plain
// directory on the same file system. It has no layer1 and no union to
// merge, so it is the floor, not a peer: no ratio is taken against it.
//
// # Scenarios, cold and warm
//
// Each run mounts every system afresh on an empty upper directory and runs
// the scenarios in this order on that mount:
//
//	meta-cold        sync; drop_caches; find MNT -ls (lstat of every entry)
//	meta-warm        the same walk again
//	cat-cold         find -type f | xargs cat of every small file: names
//	                 cached by the walks, data not yet read
//	cat-warm         the same cat again, everything cached
//	read-lower-cold  dd bs=1M of the 1 GiB lower file, first read since drop_caches
//	read-lower-warm  the same read again
//	write-upper      dd bs=1M conv=fsync of a new 1 GiB file, fsync included
//	read-upper-warm  dd of that upper file, after one untimed read
//	untar            tar -xf of the 5,000-file tarball into the mount, no sync
//
// So "cold" and "warm" are positions in the sequence, not flags: only
// meta-cold follows a drop_caches, which empties the kernel's page, dentry
// and inode caches for the FUSE mount and the layer directories alike, and
// a FUSE server's own caches start empty because the mount is new. The
// kernel caches a FUSE mount keeps between passes (entry and attribute
// timeouts, page cache kept across opens, cached directories) are exactly
// what the warm figures measure; DESIGN.md ("Facts measured") shows they
// make a 5–10x difference.
//
// # Method
//
// Every operation is an external process (find, cat, dd, tar), never the
// benchmark's own syscalls: the measuring process must not be the one the
// FUSE server serves, and each system must see the same requests. Times
// are wall-clock around the whole process, so cat-* include process
// start-up, equal for every system. dd uses 1 MiB blocks, but the kernel
// splits FUSE I/O by the mount's read_ahead_kb and max_write, which is
// part of what is measured.
//
// Runs are interleaved: run i mounts every system in turn, starting with
// a different one each run, so drift on the machine (other load, disk
// writeback, page-cache pressure) lands on all systems rather than on the
// one measured last. Each scenario is run -runs times (5 by default) and
// reported as median with min and max; a failed run adds an error, not a
// sample, and the Markdown says how many failed.
//
// Targets are the goals, checked against the ratios: warm metadata
// within 1.5x of overlayfs, reads and writes of upper files at least 0.9x
// overlayfs's speed (time ratio at most 1/0.9), and every scenario faster
// than fuse-overlayfs.
//
// # Failure handling
//
// A scenario that fails is recorded and the run goes on. Each timed
// command has a deadline (-timeout); past it its process group gets
// SIGKILL. A process waiting on a FUSE request the server never answers
// cannot die, so if it is still there shortly after, the mount is
// force-unmounted (MNT_FORCE aborts the FUSE connection, failing the
// request) and the rest of that system's run is recorded as skipped.
// Mounts and server processes are registered with a janitor as soon as
// they exist, and torn down in order at the end of each run, on SIGINT or
// SIGTERM, and on a panic; servers are stopped by PID, escalating from
// SIGTERM or umount to abort, lazy unmount and SIGKILL.
//
// # Running it
//
// As root, from the module root:
//
//	go run ./bench/cmd/unionbench -runs 5   # about 8 minutes on 2 cores
//	go run ./bench/cmd/unionbench -quick    # 1 run on 2,000 files: a smoke test
//
// Results go to bench/results/unionbench.{json,md} (-quick writes
// unionbench-quick.*). The strata binary is rebuilt from ./cmd/strata
// first unless -build=false; if it does not build, the peers are still
// measured and the report says why strata is missing. -systems picks and
// orders the columns.
package bench
