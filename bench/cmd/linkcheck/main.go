// Command linkcheck measures what a shaped link (bench/netshape) actually
// delivers on this machine, with the real curl: the time to the first
// byte and the throughput of a full GET and of a few Range GETs of a
// blob, through a relay imitating each link, medians of -runs. The
// benchmarks quote these figures beside the links they claim to use:
// a relay on a busy 2-core machine may fall short of 1 Gbit/s, and this
// is where that shows.
//
//	go run ./bench/cmd/linkcheck                        # all links, 64 MiB blob
//	go run ./bench/cmd/linkcheck -link 100M20ms -size 16M
//	go run ./bench/cmd/linkcheck -target http://127.0.0.1:5000/v2/img/blobs/sha256:…
//
// Without -target it serves -size bytes of random data from memory on
// 127.0.0.1; with it, the blob at that URL (a registry's blob URL, say),
// whose size comes from a HEAD request made directly to it. Every curl is
// a new process and so a new connection: its time to first byte includes
// the handshake the relay charges, two RTTs in all. All relays run at
// once and the links take turns in every run (each run starting with a
// different one), so drift in the machine's load lands on all of them;
// the same requests go straight to the server as a floor (-direct).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/stratafs/strata/bench/netshape"
)

type options struct {
	links  []netshape.Link
	size   int64
	ranges []int64
	target string
	runs   int
	out    string
	direct bool
}

func parseFlags() (options, error) {
	var o options
	links := flag.String("link", "100M20ms,1G2ms,loopback", "comma-separated `links`: loopback, 100M20ms, 1G2ms or RATE{K,M,G}RTT")
	size := flag.String("size", "64M", "`bytes` of the in-process blob (K, M, G: powers of 1024)")
	ranges := flag.String("ranges", "64K,1M", "comma-separated `sizes` of the Range GETs")
	flag.StringVar(&o.target, "target", "", "blob `URL` of an existing server instead of the in-process one")
	flag.BoolVar(&o.direct, "direct", true, "also measure without any relay, as a floor")
	flag.IntVar(&o.runs, "runs", 5, "runs of each request per link; medians are quoted")
	flag.StringVar(&o.out, "out", "", "`dir` to write linkcheck.md and linkcheck.json to (default: stdout only)")
	flag.Parse()
	var err error
	if o.size, err = parseSize(*size); err != nil {
		return o, err
	}
	for _, s := range strings.Split(*ranges, ",") {
		n, err := parseSize(s)
		if err != nil {
			return o, err
		}
		o.ranges = append(o.ranges, n)
	}
	for _, s := range strings.Split(*links, ",") {
		l, err := netshape.ParseLink(strings.TrimSpace(s))
		if err != nil {
			return o, err
		}
		o.links = append(o.links, l)
	}
	if o.runs < 1 {
		return o, fmt.Errorf("-runs %d: want at least 1", o.runs)
	}
	return o, nil
}

// parseSize reads "64M", "512K", "1G" or a plain byte count.
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	if i := strings.IndexAny(s, "KMGkmg"); i >= 0 && i == len(s)-1 {
		mult = map[byte]int64{'k': 1 << 10, 'm': 1 << 20, 'g': 1 << 30}[s[i]|0x20]
		s = s[:i]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("size %q: want a positive count of bytes, optionally with K, M or G", s)
	}
	return n * mult, nil
}

func main() {
	o, err := parseFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, "linkcheck:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "linkcheck:", err)
		stop()
		os.Exit(1)
	}
}
