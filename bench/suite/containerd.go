package suite

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/stratafs/strata/bench"
	"github.com/stratafs/strata/bench/images"
	"github.com/stratafs/strata/bench/peers"
)

// The systems of the containerd sections: each is a private node
// (bench/peers) whose containers `ctr run` starts on one snapshotter.
const (
	sysCtrStrata  = "strata snapshotter"
	sysCtrOverlay = "containerd overlayfs"
	sysCtrStargz  = "stargz-snapshotter ctr"
)

// ctrSystems are the containerd sections' systems and the image format
// each pulls: strata's snapshotter the lazy zstd:chunked tag, overlayfs
// the gzip tag (the classic image), stargz the estargz one (STARGZ_BIN).
var ctrSystems = []coldSystem{
	{sysCtrStrata, images.ZstdChunked},
	{sysCtrOverlay, images.Gzip},
}

var ctrStargzSystem = coldSystem{sysCtrStargz, images.EStargz}

// The two scenarios of a containerd section, measured in the same run of
// one fresh node: the cold start, then a second container.
const (
	scenCtrCold   = "cold ctr run print(1)"
	scenCtrSecond = "second ctr run print(1)"
)

// ctrEnv is what the containerd sections need, found once in setup.
type ctrEnv struct {
	bin string // strata-snapshotter
	seq int    // numbers containers
}

// setupContainerd enables the containerd sections when their scenario
// runs (with Quick, only when named): strata-snapshotter is built (or
// taken from Options.Snapshotter) and containerd and runc installed if
// missing.
func (r *runner) setupContainerd(ctx context.Context) error {
	if !r.o.wants(ScenContainerd) {
		if r.o.Quick {
			r.res.NotRun = append(r.res.NotRun, "containerd: not run: quick mode (name it: -scenarios containerd)")
		}
		return nil
	}
	if err := peers.EnsureContainerd(ctx); err != nil {
		return err
	}
	bin := r.o.Snapshotter
	if bin == "" {
		bin = filepath.Join(r.o.Work, peers.StrataSnapshotterBin)
		r.logf("go build -o %s ./cmd/strata-snapshotter", bin)
		out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/strata-snapshotter").CombinedOutput()
		if err != nil {
			return fmt.Errorf("suite: go build ./cmd/strata-snapshotter (run from the module root): %v: %s", err, strings.TrimSpace(string(out)))
		}
	}
	bin, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	for _, t := range [][]string{{"/usr/bin/containerd", "--version"}, {"/usr/sbin/runc", "--version"}} {
		out, err := exec.CommandContext(ctx, t[0], t[1:]...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("suite: %s %s: %v: %s", t[0], t[1], err, out)
		}
		first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		r.res.Machine.Tools[filepath.Base(t[0])] = first
	}
	r.ctr = &ctrEnv{bin: bin}
	return nil
}

// runCtrSystems lists the systems of this run's containerd sections.
func (r *runner) runCtrSystems() []coldSystem {
	if r.stargz == nil {
		return ctrSystems
	}
	return append(append([]coldSystem{}, ctrSystems...), ctrStargzSystem)
}

// ctrSection measures container starts through containerd on one link:
// each run starts every system's node in turn (the order rotating) from
// nothing local, times pull + run to the first output, then a second
// container of the same image.
func (r *runner) ctrSection(ctx context.Context, l *linkEnv) {
	sec := &bench.Report{Title: fmt.Sprintf("Container start through containerd over %s (%s)", l.link, r.cold.Name),
		Machine: r.res.Machine, Subject: sysCtrStrata, Peers: []string{sysCtrOverlay}}
	systems := r.runCtrSystems()
	for _, s := range systems {
		sec.Systems = append(sec.Systems, s.name)
	}
	if r.stargz != nil {
		sec.Peers = append(sec.Peers, sysCtrStargz)
	}
	sec.Setup = []bench.Field{
		{Key: "link", Value: l.link.String() + " (netshape relay in front of docker-registry; the registry's byte count is the relay's)"},
		{Key: "node", Value: "a fresh private node per system and run (bench/peers): Debian's containerd 1.6 and runc, new roots " +
			"(no content, no snapshots, no cache), started untimed, then drop_caches"},
		{Key: sysCtrStrata, Value: "`strata-snapshotter serve` as containerd's proxy snapshotter (fresh --cache); timed from " +
			"`strata-snapshotter pull --plain-http REF` of the zstd-chunked tag (layers mounted lazily), then `ctr run --rm --snapshotter strata`"},
		{Key: sysCtrOverlay, Value: "containerd's own overlayfs snapshotter: `ctr images pull --plain-http REF` of the gzip tag " +
			"(every layer downloaded and unpacked), then `ctr run --rm --snapshotter overlayfs`"},
		{Key: "runs", Value: fmt.Sprintf("%d; systems interleaved, order rotated each run", r.o.Runs)},
	}
	if r.stargz != nil {
		sec.Setup = append(sec.Setup, bench.Field{Key: sysCtrStargz, Value: "containerd-stargz-grpc from STARGZ_BIN as the proxy " +
			"snapshotter (default config); timed from `ctr-remote images rpull --plain-http REF` of the estargz tag, then `ctr run --rm --snapshotter stargz`"})
	}
	r.res.Sections = append(r.res.Sections, sec)
	cold := sec.Scenario(scenCtrCold, "from nothing local (a new node, drop_caches) through the pull to the first line of "+
		"`ctr run --rm IMAGE ID python3 -c 'print(1)'`", 0)
	second := sec.Scenario(scenCtrSecond, "then a second container of the same image, nothing else changed, to its first line of output", 0)
	for run := range r.o.Runs {
		for k := range systems {
			if ctx.Err() != nil {
				return
			}
			sys := systems[(run+k)%len(systems)]
			dir := filepath.Join(r.o.Work, "containerd", l.link.Name, fmt.Sprintf("run%d-%s", run, slug(sys.name)))
			first, next, err := r.ctrOne(ctx, l, sys, dir, row(&r.res.Bytes, sec.Title, scenCtrCold, sys.name, 0))
			// A failure after the cold start fails only the second.
			coldErr := err
			if first > 0 {
				coldErr = nil
			}
			cold.Record(sys.name, first, coldErr)
			second.Record(sys.name, next, err)
			if err != nil {
				r.logf("%s run %d %s containerd: ERROR %v", l.link, run+1, sys.name, err)
			} else {
				r.logf("%s run %d %-24s cold %7.3f s, second %7.3f s", l.link, run+1, sys.name, first, next)
			}
			r.remove(dir)
		}
	}
	sec.Finish()
}

// ctrOne is one run of one system: a fresh node under dir, the image
// pulled and started (cold), then started again (second). It returns
// both times in seconds; on an error after the cold start, that one's
// time with the error.
func (r *runner) ctrOne(ctx context.Context, l *linkEnv, sys coldSystem, dir string, bytesRow *CountRow) (cold, second float64, err error) {
	ctx, cancel := context.WithTimeout(ctx, r.o.Timeout)
	defer cancel()
	node, n, err := r.startCtrNode(ctx, sys, filepath.Join(dir, "n"))
	stop := r.clean.Add(node.Stop)
	defer func() { err = errors.Join(err, stop()) }()
	if err != nil {
		return 0, 0, err
	}
	if err := peers.DropCaches(); err != nil {
		return 0, 0, err
	}
	ref := l.ref(r.cold.Name + ":" + sys.format.Tag())
	before := l.relay.Stats().Down
	start := time.Now()
	if err := node.Pull(ctx, ref); err != nil {
		return 0, 0, err
	}
	d, err := n.Run(ctx, ref, r.ctrID(), start, "1\n", peers.PythonPrint...)
	if err != nil {
		return 0, 0, err
	}
	bytesRow.add("registry (relay)", float64(l.relay.Stats().Down-before))
	start = time.Now()
	d2, err := n.Run(ctx, ref, r.ctrID(), start, "1\n", peers.PythonPrint...)
	if err != nil {
		return d.Seconds(), 0, err
	}
	if err := n.Alive(); err != nil {
		return d.Seconds(), 0, err
	}
	if r.o.wants(ScenMemory) && sys.name != sysCtrOverlay {
		rss, err := peers.PeakRSS(n.PID())
		if err != nil {
			return d.Seconds(), 0, err
		}
		row(&r.res.Memory, bytesRow.Section, bytesRow.Scenario, sys.name+" (daemon)", r.cold.Entries).add("peak RSS", float64(rss))
	}
	return d.Seconds(), d2.Seconds(), nil
}

// ctrNode is a node as the containerd sections use it: its own pull
// (lazy or full) and the common Node for the rest.
type ctrNode interface {
	Pull(ctx context.Context, ref string) error
	Stop() error
}

// startCtrNode starts sys's node under dir. It always returns a node to
// stop, even on failure.
func (r *runner) startCtrNode(ctx context.Context, sys coldSystem, dir string) (ctrNode, *peers.Node, error) {
	switch sys.name {
	case sysCtrStrata:
		n, err := peers.StartStrataNode(ctx, r.ctr.bin, dir, r.o.SnapshotterArgs...)
		return n, n.Node, err
	case sysCtrStargz:
		n, err := peers.StartStargz(ctx, r.stargz.bin, dir, r.stargz.hosts)
		return n, n.Node, err
	default:
		n, err := peers.StartContainerd(ctx, dir)
		return n, n, err
	}
}

func (r *runner) ctrID() string {
	r.ctr.seq++
	return fmt.Sprintf("strata-bench-%d-%d", os.Getpid(), r.ctr.seq)
}
