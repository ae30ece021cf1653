// Command unionbench measures strata against kernel overlayfs and
// fuse-overlayfs on the same two layers, in one run, and writes
// bench/results/unionbench.{json,md}. See package bench for what is
// measured and why.
//
//	go run ./bench/cmd/unionbench -runs 5
//	go run ./bench/cmd/unionbench -quick -systems overlayfs,fuse-overlayfs
//
// It needs root (mounts, drop_caches) and fuse-overlayfs installed.
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
	work, strata, systems, out string
	build, quick               bool
	runs, files                int
	timeout                    time.Duration
}

func parseFlags() options {
	var o options
	flag.StringVar(&o.work, "work", "/var/tmp/strata-bench", "cache `dir` for the layers, upper dirs and mountpoints")
	flag.StringVar(&o.strata, "strata", "./bin/strata", "strata `binary`")
	flag.BoolVar(&o.build, "build", true, "(re)build the strata binary from ./cmd/strata first")
	flag.StringVar(&o.systems, "systems", "native,overlayfs,fuse-overlayfs,strata", "comma-separated `list` of systems, in report column order")
	flag.StringVar(&o.out, "out", "bench/results", "`dir` for unionbench.json and unionbench.md")
	flag.IntVar(&o.runs, "runs", 5, "runs per system and scenario (medians need >= 5)")
	flag.IntVar(&o.files, "files", 20000, "regular files copied into layer0")
	flag.BoolVar(&o.quick, "quick", false, "smoke test: 1 run, 2,000 files, 64 MiB bulk file; writes unionbench-quick.*")
	flag.DurationVar(&o.timeout, "timeout", 5*time.Minute, "limit for one timed command; past it the system's run is abandoned")
	flag.Parse()
	return o
}

func (o options) spec() treeSpec {
	s := treeSpec{Version: treeVersion, Files: o.files, BigBytes: 1 << 30, TarFiles: 5000,
		Overrides: 300, Whiteouts: 100, Added: 100}
	if o.quick {
		s.Files, s.BigBytes, s.TarFiles = 2000, 64<<20, 1000
	}
	return s
}

func main() {
	o := parseFlags()
	if o.quick {
		o.runs = 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "unionbench:", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root: it mounts file systems and drops caches")
	}
	work, err := filepath.Abs(o.work)
	if err != nil {
		return err
	}
	b := &benchmark{opts: o, work: work, j: &bench.Cleanups{}, seen: map[string]int{}}
	// Deferred, so the mounts go even when a scenario panics.
	defer b.j.RunAll(progress)
	if err := b.setup(ctx, strings.Split(o.systems, ",")); err != nil {
		return err
	}
	b.measure(ctx)
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted; no report written")
	}
	return b.write()
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
}
