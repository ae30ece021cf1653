package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"time"

	"github.com/stratafs/strata/bench"
	"github.com/stratafs/strata/bench/netshape"
)

// run measures every link in turn and prints the report.
func run(ctx context.Context, o options) error {
	curl, err := netshape.EnsureCurl(ctx)
	if err != nil {
		return err
	}
	rep := &report{Machine: bench.ThisMachine(), Runs: o.runs}
	rep.Machine.Tools["curl"] = netshape.CurlVersion(ctx, curl)
	blobURL, size := o.target, o.size
	if blobURL == "" {
		srv, err := startBlobServer(o.size)
		if err != nil {
			return err
		}
		defer srv.stop()
		blobURL = srv.url
	} else if size, err = blobSize(ctx, blobURL); err != nil {
		return err
	}
	u, err := url.Parse(blobURL)
	if err != nil {
		return err
	}
	rep.URL, rep.Size = blobURL, size
	links := append([]netshape.Link(nil), o.links...)
	if o.direct {
		links = append(links, direct)
	}
	paths := make([]*path, len(links))
	for i, l := range links {
		if paths[i], err = newPath(ctx, u, size, l, o.ranges); err != nil {
			return err
		}
		defer paths[i].close()
	}
	progress("%d runs of a full GET of %d bytes and Range GETs of %v on each of %v", o.runs, size, o.ranges, links)
	for i := range o.runs {
		// Links take turns, each run starting with a different one, so
		// that drift in the machine's load lands on all of them.
		for j := range paths {
			if err := ctx.Err(); err != nil {
				return err
			}
			paths[(i+j)%len(paths)].measure(ctx, curl, i)
		}
	}
	for _, p := range paths {
		rep.Rows = append(rep.Rows, p.summarize()...)
	}
	rep.Machine.LoadEnd = bench.LoadAvg()
	fmt.Print(rep.markdown())
	return rep.write(o.out)
}

// direct stands for no relay at all: curl connects to the server itself,
// the floor the relayed loopback link is to be compared with.
var direct = netshape.Link{Name: "direct, no relay"}

// path is the way to the blob over one link: a relay imitating it (none
// for direct), the requests to time and their results.
type path struct {
	link   netshape.Link
	relay  *netshape.Relay
	size   int64
	full   netshape.Fetch
	ranges []netshape.Fetch
	rows   []row // rows[0] the full GET, then one per range
}

func newPath(ctx context.Context, u *url.URL, size int64, l netshape.Link, ranges []int64) (*path, error) {
	p := &path{link: l, size: size}
	via := hostPort(u)
	if l != direct {
		r, err := netshape.Start(ctx, hostPort(u), l)
		if err != nil {
			return nil, err
		}
		p.relay, via = r, r.Addr()
	}
	base := netshape.Fetch{URL: u.String(), Origin: hostPort(u), Via: via}
	p.full = base
	p.full.Full, p.full.N, p.full.WantCode = true, size, 200
	p.rows = []row{newRow(l, fmt.Sprintf("GET %s", sizeName(size)), size)}
	for _, n := range ranges {
		f := base
		f.N, f.WantCode = n, 206
		p.ranges = append(p.ranges, f)
		p.rows = append(p.rows, newRow(l, fmt.Sprintf("Range %s", sizeName(n)), n))
	}
	return p, nil
}

// measure times each request once; run picks the ranges' offsets, the
// same on every link.
func (p *path) measure(ctx context.Context, curl string, run int) {
	p.rows[0].add(p.full.Run(ctx, curl))
	rng := rand.New(rand.NewPCG(uint64(run), 1))
	for i, f := range p.ranges {
		if f.N <= p.size {
			f.Off = rng.Int64N((p.size-f.N)/4096+1) * 4096
		}
		p.rows[i+1].add(f.Run(ctx, curl))
	}
}

func (p *path) summarize() []row {
	for i := range p.rows {
		p.rows[i].summarize()
	}
	return p.rows
}

func (p *path) close() {
	if p.relay != nil {
		progress("link %s: relay %+v", p.link, p.relay.Stats())
		p.relay.Close()
	}
}

// sizeName writes a byte count in the largest binary unit that divides it.
func sizeName(n int64) string {
	for _, u := range []struct {
		div  int64
		name string
	}{{1 << 30, "GiB"}, {1 << 20, "MiB"}, {1 << 10, "KiB"}} {
		if n%u.div == 0 {
			return fmt.Sprintf("%d %s", n/u.div, u.name)
		}
	}
	return fmt.Sprintf("%d B", n)
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
}
