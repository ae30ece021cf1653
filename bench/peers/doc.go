// Package peers holds what strata's benchmarks do to the systems they
// compare, written once: the classic full pull (every layer blob fetched,
// extracted in overlayfs form, mounted with kernel overlayfs), a FUSE
// daemon run as a child (strata, fuse-overlayfs) with its mount awaited
// and torn down by escalation, strata's own account of a mount
// (`strata stat --json`), and the measuring acts every benchmark shares:
// drop_caches, time to a command's first line of output in a chroot of a
// mount, reading every file of a tree, a process's peak RSS.
//
// # Mounts are found in mountinfo
//
// Whether a directory carries a mount, and of which type, is read from
// /proc/self/mountinfo ([FsType]), never by a stat of the directory: a
// stat blocks forever on a FUSE server that stopped answering, mountinfo
// does not. [Unmount] retries a clean umount(2) (EBUSY lingers just after
// the last reader exits), then [ForceUnmount]s: MNT_FORCE on a FUSE mount
// aborts its connection, failing the pending requests so stuck clients
// can exit, and MNT_DETACH removes the mount even if the server still
// holds /dev/fuse.
//
// # Daemons
//
// A [Daemon] is a FUSE server run in the foreground as this process's
// child, in its own process group (a Ctrl-C on the terminal reaches only
// the benchmark, which then unmounts in order), with its output in a log
// file quoted in errors. Start returns once mountinfo shows the mount with
// the daemon's file system type. Stop asks the daemon to go the way it
// documents (a command such as `strata umount`, SIGTERM, or umount(2)),
// waits for it to exit, then escalates: force unmount, SIGKILL to the
// process group. Each step that was needed is reported as an error, so a
// benchmark never quietly measures a daemon that does not shut down.
//
// The caller registers Stop with a bench.Cleanups as soon as Start
// returns (or fails: Stop is safe on a daemon that never mounted), so a
// signal or a panic still unmounts everything.
//
// # containerd nodes
//
// A [Node] is a private containerd (Debian's 1.6, with runc), its roots,
// state, configs and sockets under one directory, driven with the ctr
// command line, so the benchmarks need no containerd Go module. Its
// containers run on one snapshotter, and the three kinds of node differ
// only in that and in how they pull:
//
//	node             snapshotter                       pull
//	StartContainerd  containerd's own overlayfs        ctr images pull: every layer downloaded, unpacked
//	StrataNode       strata-snapshotter serve (proxy)  strata-snapshotter pull: lazy layers mounted
//	StargzNode       containerd-stargz-grpc (proxy)    ctr-remote images rpull: lazy layers mounted
//
// A proxy snapshotter's daemon is started before containerd and stopped
// after it. Run is `ctr run --rm`, timed to the command's first line of
// output, the container's setup included. Daemons that serve a socket
// rather than a mount are services: ready when the socket answers,
// stopped by their documented signal (SIGTERM for containerd and
// strata-snapshotter, SIGINT for stargz; the proxies then unmount their
// layers), then by SIGKILL, and they die with the benchmark (Pdeathsig).
// Stop also deletes containers left by an interrupted run, kills the
// runc shims still naming the node's socket (the only processes of a
// node that are not its children), and detaches, reporting it, anything
// still mounted under the node's directory.
package peers
