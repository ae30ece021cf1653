// Package suite is strata's benchmark suite: every scenario of issue 5,
// every system that applies, in one run, written as one report
// (suite.json, suite.md, PNG plots). Command bench/cmd/suite runs it
// (`make bench`, `make bench-quick`); tests/bench_smoke_test.go runs the
// quick version once as a smoke test.
//
// # What runs where
//
//	setup     strata built from ./cmd/strata; images from bench/images (quick: the
//	          small image; full: debian-python for the cold sections, debian-large
//	          for the local one; the synthetic ones below when their scenario runs),
//	          each format a scenario reads pushed once to Debian's docker-registry
//	          on 127.0.0.1 (bench/registry); one bench/netshape relay per link in
//	          front of it; curl through each relay (the link check in the report)
//	cold      one section per link, image pulled or mounted through the link's relay:
//	  cold python3 print(1), cold /app/main.py   time from nothing local to the first
//	                                               line of output (chroot MNT ...)
//	  full read                                  time until every file has been read
//	  scale: N containers                        N = 1, 4, 16 at once, until all printed
//	  systems: full-pull (every gzip layer fetched + extracted, overlayfs),
//	           strata zstd:chunked, strata estargz, strata zstd:chunked
//	           kernel-overlay (--kernel-overlay; its N containers share one
//	           image mount); with STARGZ_BIN (not with
//	           Quick, not for scaling) stargz-snapshotter, in two launches (below)
//	local     one section, registry on loopback, the local image:
//	  find -ls, ls -lR cold and warm; read every file (first, warm); fio 1 MiB
//	  sequential and 4 KiB random, warm; untar, copy-up (the image's largest
//	  file), small creates; copy-up 1 GiB (not with Quick: its own mount of
//	  bigfile-1g per system per run, after the other steps)
//	  systems: strata, strata kernel-overlay, overlayfs, fuse-overlayfs (over the gzip layers extracted
//	           once), native (the merged tree copied into a plain directory)
//	memory    strata mounts of files-100k (quick: files-2k) and files-tiny, fresh
//	          each run: peak RSS after `find -ls` and after reading every file;
//	          per 100,000 files = the difference of the medians per file
//	containerd  one section per link (not with Quick unless named), the cold image through
//	          containerd 1.6 and runc, a fresh private node per system and run (bench/peers):
//	  cold ctr run print(1)     from nothing local (node started untimed, drop_caches)
//	                            through the pull to the first line of `ctr run --rm`
//	  second ctr run print(1)   then a second container of the same image, to its first line
//	  systems: strata snapshotter (strata-snapshotter built from ./cmd/strata-snapshotter,
//	           `strata-snapshotter pull` of the zstd-chunked tag), containerd overlayfs
//	           (`ctr images pull` of the gzip tag); with STARGZ_BIN, stargz-snapshotter ctr
//	           (rpull of the estargz tag)
//	counts    bytes: the registry's count (the relay's bytes downstream), strata's
//	          own (`strata stat --json`: fetched, served) and the bytes a full read
//	          read; memory: the strata process's VmHWM after each cold run and after
//	          the local steps (fuse-overlayfs's, containerd-stargz-grpc's too)
//
// # stargz-snapshotter
//
// STARGZ_BIN names a directory holding containerd-stargz-grpc and
// ctr-remote, built by the user from github.com/containerd/stargz-snapshotter
// (the suite never builds or downloads them); Debian's containerd 1.6 and
// runc are installed with apt-get if missing. Each run of a stargz system
// starts a private node (bench/peers.StargzNode: both daemons with new
// roots under the run's directory, so nothing is local), untimed, then
// drops the caches and times from `ctr-remote images rpull --plain-http`
// of the estargz tag through the link's relay (rpull passes the
// remote-snapshot labels; `ctr pull` would download every layer), then:
//
//	stargz-snapshotter   the image's snapshot prepared and its mounts
//	                     (overlayfs over stargz's FUSE layers) mounted on the host;
//	                     the command chrooted there, or every file read: the
//	                     launcher every other system gets
//	stargz ctr run       `ctr run --rm --snapshotter stargz REF ID CMD`: the
//	                     command in a runc container, as containerd runs it, the
//	                     container's setup included (cold scenarios only)
//
// The node is torn down after each run (containers, containerd, stray
// shims, containerd-stargz-grpc with SIGINT, on which it unmounts its
// layers), and by the cleanups on an error or a signal.
//
// # Method
//
// Each measurement starts from fresh directories: a new upper, a new
// --cache for strata (so a default shared cache never makes a run warm),
// and, for the cold section and the "cold" local steps, after sync and
// drop_caches. Systems are interleaved: run i measures each system in
// turn, the first one rotating with i, so drift on the machine lands on
// all of them. Times are medians of Options.Runs (5 by default, 1 with
// Quick) with min and max; every group, local, scaling and memory
// included, runs Options.Runs times. A failed run adds an error, not a
// sample.
// Ratios are the section's subject (strata; strata zstd:chunked in the
// cold sections) over each peer: below 1, strata is faster. Every timed
// file operation is an external process, never the suite's own syscalls.
//
// # Cleaning up
//
// Every mount, FUSE daemon, relay and the registry is registered with a
// bench.Cleanups the moment it exists and torn down when its run is done,
// or by Run's deferred RunAll on an error, a cancelled ctx (the command
// cancels it on SIGINT and SIGTERM) or a panic; daemons are stopped by
// PID with escalation (bench/peers). Run empties Options.Work first,
// detaching anything a killed earlier run left mounted there.
//
// # Reading the result
//
// Result.Missing lists every measurement that applies and has no clean
// result; the command exits 1 when it is not empty, and the smoke test
// requires it empty. It asserts no speed: speed is what the report is for.
package suite
