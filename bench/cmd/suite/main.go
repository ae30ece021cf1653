// Command suite runs strata's benchmark suite (package bench/suite): cold
// start, full read, bytes fetched, warm reads, metadata, writes, memory
// and scaling, strata against a full pull + overlayfs, kernel overlayfs,
// fuse-overlayfs and a native directory, and container start through
// containerd (strata's snapshotter against containerd's overlayfs), on
// each link, in one run. It writes suite.json, suite.md and PNG plots to
// -out.
//
//	go run ./bench/cmd/suite                      # full: about an hour on 2 cores
//	go run ./bench/cmd/suite -quick               # smoke test: small image, 1 run, loopback
//	go run ./bench/cmd/suite -quick -scenarios containerd   # containerd on the small image (not in plain -quick)
//	go run ./bench/cmd/suite -runs 3 -links loopback,100M20ms -scenarios cold,fullread,bytes
//	STARGZ_BIN=DIR go run ./bench/cmd/suite -scenarios cold,fullread,bytes   # + stargz-snapshotter
//
// STARGZ_BIN is a directory holding stargz-snapshotter's
// containerd-stargz-grpc and ctr-remote, built by the user; with it the
// cold sections also measure stargz-snapshotter in Debian's containerd
// (installed with apt-get if missing), except with -quick.
//
// It needs root (mounts, chroot, drop_caches) and runs from the module
// root (it builds ./cmd/strata, and ./cmd/strata-snapshotter for the
// containerd scenario). SIGINT or SIGTERM stops it after
// unmounting and stopping everything it started; no report is written then.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/stratafs/strata/bench/netshape"
	"github.com/stratafs/strata/bench/suite"
)

func main() {
	var o suite.Options
	var links, scens string
	flag.BoolVar(&o.Quick, "quick", false, "small image, 1 run, loopback only: the smoke test")
	flag.IntVar(&o.Runs, "runs", 0, "runs per system and scenario (default 5; 1 with -quick)")
	flag.StringVar(&links, "links", "", "comma-separated `links`: loopback, 100M20ms, 1G2ms or RATE{K,M,G}RTT (default all three; loopback with -quick)")
	flag.StringVar(&scens, "scenarios", "", "comma-separated scenario `groups`: "+strings.Join(suite.AllScenarios, ",")+" (default all)")
	flag.StringVar(&o.Out, "out", "bench/results", "`dir` for suite.json, suite.md and the plots")
	flag.StringVar(&o.Work, "work", "", "scratch `dir`, emptied first (default /var/tmp/strata-suite)")
	flag.StringVar(&o.ImageCache, "image-cache", "", "images' cache `dir` (default /var/cache/strata-bench)")
	flag.StringVar(&o.Strata, "strata", "", "strata `binary` (default: built from ./cmd/strata)")
	flag.StringVar(&o.Snapshotter, "snapshotter", "", "strata-snapshotter `binary` for the containerd scenario (default: built from ./cmd/strata-snapshotter)")
	flag.Func("snapshotter-arg", "one more `argument` for strata-snapshotter serve, such as --detached-mounts (repeatable)", func(s string) error {
		o.SnapshotterArgs = append(o.SnapshotterArgs, s)
		return nil
	})
	flag.DurationVar(&o.Timeout, "timeout", 0, "limit for one system's run of one scenario (default 10m)")
	flag.Parse()
	o.Progress = os.Stderr
	if err := parseLists(&o, links, scens); err != nil {
		fmt.Fprintln(os.Stderr, "suite:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	start := time.Now()
	res, err := suite.Run(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "suite:", err)
		stop()
		os.Exit(1)
	}
	fmt.Print(res.Markdown())
	if m := res.Missing(); len(m) > 0 {
		fmt.Fprintf(os.Stderr, "suite: %d measurements failed (see the report's errors); took %v\n", len(m), time.Since(start).Round(time.Second))
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "suite: done in %v\n", time.Since(start).Round(time.Second))
}

func parseLists(o *suite.Options, links, scens string) error {
	if links != "" {
		for _, s := range strings.Split(links, ",") {
			l, err := netshape.ParseLink(strings.TrimSpace(s))
			if err != nil {
				return err
			}
			o.Links = append(o.Links, l)
		}
	}
	if scens != "" {
		for _, s := range strings.Split(scens, ",") {
			o.Scenarios = append(o.Scenarios, strings.TrimSpace(s))
		}
	}
	return nil
}
