// Command coldstart measures time to first output of
// `python3 -c 'print(1)'` from nothing local, for strata mounting an image
// lazily (zstd:chunked and eStargz) against a full pull + extract + kernel
// overlayfs, and the bytes each fetches. It writes
// bench/results/coldstart.{json,md}.
//
//	go run ./bench/cmd/coldstart -runs 5
//
// The image is three layers built once from this machine's files (see
// layers.sh) and cached under -image; it is pushed as an ordinary gzip image
// to an in-process registry on 127.0.0.1 and converted with `strata convert`
// for each run of the benchmark. Every run of every system starts after
// sync + drop_caches, with fresh directories and a new strata process, so
// nothing of the image is local except in the registry (which holds its
// blobs in memory, like a registry on a fast LAN whose disk is warm).
//
// Systems are interleaved: run i measures each system in turn, starting
// with a different one each run. Needs root (mounts, chroot, drop_caches).
package main

import (
	"context"
	"flag"
	"fmt"
	"github.com/stratafs/strata/bench"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

type options struct {
	image, work, strata, out string
	runs                     int
	build, rebuild, keep     bool
	fullRead, cache, seq     bool
	second, prioritize       bool
	mountArgs                listFlag
	timeout                  time.Duration
}

func parseFlags() options {
	var o options
	flag.StringVar(&o.image, "image", "/var/tmp/strata-bench/coldstart", "cache `dir` for the image's layers (built once)")
	flag.StringVar(&o.work, "work", "", "scratch `dir` for extracted layers, uppers and mountpoints (default: IMAGE/runs)")
	flag.StringVar(&o.strata, "strata", "./bin/strata", "strata `binary`")
	flag.BoolVar(&o.build, "build", true, "(re)build the strata binary from ./cmd/strata first")
	flag.BoolVar(&o.rebuild, "rebuild-image", false, "rebuild the cached layers")
	flag.StringVar(&o.out, "out", "bench/results", "`dir` for coldstart.json and coldstart.md")
	flag.IntVar(&o.runs, "runs", 5, "runs per system (medians need >= 5)")
	flag.BoolVar(&o.keep, "keep", false, "keep each run's directory (extracted layers, upper, strata.log) after unmounting it")
	flag.Var(&o.mountArgs, "mount-arg", "extra `ARG` for strata mount (repeat), e.g. -mount-arg=--debug -mount-arg=--cpu-profile=F")
	flag.BoolVar(&o.fullRead, "full-read", true, "after the first output, read every file of the image and time that too")
	flag.BoolVar(&o.second, "second", true, "after the first output, time a second container's start on the same node (warm cache; extracted layers)")
	flag.BoolVar(&o.prioritize, "prioritize", false, "record one start and mount images converted with those files first (strata convert --prioritize)")
	flag.BoolVar(&o.seq, "seq", true, "also time a cold sequential read of a 256 MiB file against curl of its blob")
	flag.BoolVar(&o.cache, "cache", true, "give each strata mount a fresh on-disk cache (--cache RUN/cache), as a node would have; false: --no-cache (memory only)")
	flag.DurationVar(&o.timeout, "timeout", 3*time.Minute, "limit for one system's run")
	flag.Parse()
	if o.work == "" {
		o.work = filepath.Join(o.image, "runs")
	}
	return o
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, " ") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	o := parseFlags()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "coldstart:", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root: it mounts file systems, chroots and drops caches")
	}
	// Extracted files must get the modes in the tar, not mode &^ umask.
	syscall.Umask(0)
	var err error
	for _, p := range []*string{&o.image, &o.work, &o.strata} {
		if *p, err = filepath.Abs(*p); err != nil {
			return err
		}
	}
	b := &benchmark{opts: o, clean: &bench.Cleanups{}}
	// Deferred, so mounts and processes go on error, signal and panic too.
	defer b.clean.RunAll(progress)
	if err := b.setup(ctx); err != nil {
		return err
	}
	b.measure(ctx)
	if o.seq {
		b.measureSeq(ctx)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted; no report written")
	}
	return b.write()
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
}
