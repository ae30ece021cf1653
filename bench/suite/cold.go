package suite

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/stratafs/strata/bench"
	"github.com/stratafs/strata/bench/images"
	"github.com/stratafs/strata/bench/peers"
)

// System names, as the report's columns show them.
const (
	sysFullPull = "full-pull"
	sysStrataZC = "strata zstd:chunked"
	sysStrataES = "strata estargz"
	// strata mount --kernel-overlay: strata serves the image read-only and
	// open-less, kernel overlayfs the upper; mounts of one image share it.
	sysStrataKovZC = "strata zstd:chunked kernel-overlay"
	sysStrataKov   = "strata kernel-overlay"
	sysStrata      = "strata"
	sysOverlay     = "overlayfs"
	sysFuseOverlay = "fuse-overlayfs"
	sysNative      = "native"
	// stargz-snapshotter in containerd 1.6 (STARGZ_BIN): the image's
	// snapshot mounted on the host and the command chrooted in it, as the
	// other systems run it; or the command in a runc container (`ctr run`),
	// as containerd runs it.
	sysStargz    = "stargz-snapshotter"
	sysStargzCtr = "stargz ctr run"
)

// coldSystem is one way to start a container from the registry.
type coldSystem struct {
	name   string
	format images.Format
}

// coldSystems are the systems every cold section measures; with
// STARGZ_BIN, stargzSystems come after them.
var (
	coldSystems = []coldSystem{
		{sysFullPull, images.Gzip},
		{sysStrataZC, images.ZstdChunked},
		{sysStrataES, images.EStargz},
		{sysStrataKovZC, images.ZstdChunked},
	}
	stargzSystems = []coldSystem{
		{sysStargz, images.EStargz},
		{sysStargzCtr, images.EStargz},
	}
)

// runColdSystems lists the systems of this run's cold sections.
func (r *runner) runColdSystems() []coldSystem {
	if r.stargz == nil {
		return coldSystems
	}
	return append(slices.Clone(coldSystems), stargzSystems...)
}

// coldScenario is what one cold run does once its system is up.
type coldScenario struct {
	name, group, doc string
	// firstOutput: time to the command's first line; else read everything.
	argv []string
	want string
}

var coldScenarios = []coldScenario{
	{name: "cold python3 print(1)", group: ScenCold, argv: peers.PythonPrint, want: "1\n",
		doc: "from nothing local to the first line of `chroot MNT python3 -c 'print(1)'`"},
	{name: "cold /app/main.py", group: ScenCold, argv: []string{"/usr/bin/python3", "/app/main.py"}, want: "strata-bench-app:",
		doc: "from nothing local to the first line of `chroot MNT python3 /app/main.py` (imports, reads its data files)"},
	{name: "full read", group: ScenFullRead,
		doc: "from nothing local until every regular file of the image has been read whole, one at a time, in directory order"},
}

// coldSection measures the cold scenarios on one link: each run starts
// every system in turn (the order rotating), from fresh directories after
// drop_caches.
func (r *runner) coldSection(ctx context.Context, l *linkEnv) {
	sec := &bench.Report{Title: fmt.Sprintf("Cold start over %s (%s)", l.link, r.cold.Name), Machine: r.res.Machine,
		Subject: sysStrataZC, Peers: []string{sysFullPull, sysStrataES}, Also: []string{sysStrataKovZC}}
	systems := r.runColdSystems()
	for _, s := range systems {
		sec.Systems = append(sec.Systems, s.name)
	}
	if r.stargz != nil {
		sec.Peers = append(sec.Peers, sysStargz, sysStargzCtr)
	}
	sec.Setup = []bench.Field{
		{Key: "link", Value: l.link.String() + " (netshape relay in front of docker-registry; the registry's byte count is the relay's)"},
		{Key: "full-pull", Value: "every gzip layer fetched and extracted in parallel (bench/peers.FullPull), kernel overlayfs mounted"},
		{Key: "strata", Value: "`strata mount --upper U --cache FRESH REF MNT` (default prefetch) of the zstd-chunked / estargz tag"},
		{Key: "runs", Value: fmt.Sprintf("%d; systems interleaved, order rotated each run; drop_caches before each", r.o.Runs)},
	}
	if r.stargz != nil {
		sec.Setup = append(sec.Setup, r.stargzSetup()...)
	}
	r.res.Sections = append(r.res.Sections, sec)
	for run := range r.o.Runs {
		for _, sc := range coldScenarios {
			if !r.o.wants(sc.group) && !(r.o.wants(ScenBytes) && sc.group == ScenCold) {
				continue
			}
			for k := range systems {
				if ctx.Err() != nil {
					return
				}
				sys := systems[(run+k)%len(systems)]
				if applies(sc.name, sys.name) {
					r.coldOne(ctx, sec, l, sys, sc, run)
				}
			}
		}
		if r.o.wants(ScenScaling) {
			r.scaling(ctx, sec, l, run)
		}
	}
	sec.Finish()
}

// coldStart is one started system: where its tree is and how to stop it.
type coldStart struct {
	mnt  string
	pid  int // strata's, for stat and peak RSS; 0 for full-pull
	stop func() error
}

// start brings sys up on dir/mnt from ref: a full pull (layers under
// dir/layers unless lowers are given) or a strata mount with cache.
func (r *runner) start(ctx context.Context, sys coldSystem, ref, dir, cache string, lowers []string) (*coldStart, error) {
	st := &coldStart{mnt: filepath.Join(dir, "mnt")}
	if err := os.MkdirAll(st.mnt, 0o755); err != nil {
		return nil, err
	}
	if sys.name == sysFullPull {
		var err error
		if lowers == nil {
			if lowers, err = peers.FullPull(ctx, ref, filepath.Join(dir, "layers")); err != nil {
				return nil, err
			}
		}
		if err := peers.MountOverlay(st.mnt, filepath.Join(dir, "upper"), filepath.Join(dir, "work"), lowers); err != nil {
			return nil, err
		}
		st.stop = r.clean.Add(func() error { return peers.Unmount(st.mnt) })
		return st, nil
	}
	upper := filepath.Join(dir, "upper")
	if err := os.MkdirAll(upper, 0o755); err != nil {
		return nil, err
	}
	args := []string{"--upper", upper, "--cache", cache}
	if sys.name == sysStrataKovZC {
		args = append(args, "--kernel-overlay")
	}
	d := peers.Strata(r.o.Strata, args, ref, st.mnt, dir)
	st.stop = r.clean.Add(d.Stop)
	if err := d.Start(ctx); err != nil {
		return nil, errors.Join(err, st.stop())
	}
	st.pid = d.PID()
	return st, nil
}

// coldOne is one run of one system in one cold scenario.
func (r *runner) coldOne(ctx context.Context, sec *bench.Report, l *linkEnv, sys coldSystem, sc coldScenario, run int) {
	ctx, cancel := context.WithTimeout(ctx, r.o.Timeout)
	defer cancel()
	dir := filepath.Join(r.o.Work, "cold", l.link.Name, fmt.Sprintf("run%d-%s-%s", run, slug(sys.name), slug(sc.name)))
	bytesRow := row(&r.res.Bytes, sec.Title, sc.name, sys.name, 0)
	measure := r.coldMeasure
	if isStargz(sys.name) {
		measure = r.stargzMeasure
	}
	secs, err := measure(ctx, l, sys, sc, dir, bytesRow)
	if r.o.wants(sc.group) {
		sec.Scenario(sc.name, sc.doc, 0).Record(sys.name, secs, err)
	}
	if err != nil {
		r.logf("%s run %d %s %s: ERROR %v", l.link, run+1, sys.name, sc.name, err)
	} else {
		r.logf("%s run %d %-20s %-24s %7.3f s", l.link, run+1, sys.name, sc.name, secs)
	}
	r.remove(dir)
}

// remove deletes a run's directory unless something is still mounted in
// it (RemoveAll would descend into the mount); that is reported instead.
func (r *runner) remove(dir string) {
	if m := peers.MountsUnder(dir); len(m) > 0 {
		r.res.Errors = append(r.res.Errors, fmt.Sprintf("left %s in place: %v still mounted", dir, m))
		return
	}
	if err := os.RemoveAll(dir); err != nil {
		r.logf("remove %s: %v", dir, err)
	}
}

func (r *runner) coldMeasure(ctx context.Context, l *linkEnv, sys coldSystem, sc coldScenario, dir string, bytesRow *CountRow) (secs float64, err error) {
	if err := peers.DropCaches(); err != nil {
		return 0, err
	}
	before := l.relay.Stats().Down
	start := time.Now()
	st, err := r.start(ctx, sys, l.ref(r.cold.Name+":"+sys.format.Tag()), dir, filepath.Join(dir, "cache"), nil)
	if err != nil {
		return 0, err
	}
	defer func() { err = errors.Join(err, st.stop()) }()
	var read int64
	if sc.argv != nil {
		var d time.Duration
		d, err = peers.FirstOutput(ctx, st.mnt, start, sc.want, sc.argv...)
		secs = d.Seconds()
	} else {
		read, err = peers.ReadEverything(ctx, st.mnt)
		secs = time.Since(start).Seconds()
		bytesRow.add("read by the command", float64(read))
	}
	if err != nil {
		return 0, err
	}
	bytesRow.add("registry (relay)", float64(l.relay.Stats().Down-before))
	if st.pid != 0 {
		err = r.strataCounts(ctx, st, bytesRow)
	}
	return secs, err
}

// strataCounts adds strata's own account and its peak RSS, one status
// refresh after the command (background prefetch in that second counts).
func (r *runner) strataCounts(ctx context.Context, st *coldStart, bytesRow *CountRow) error {
	time.Sleep(peers.StatRefresh)
	t, err := peers.StrataStat(ctx, r.o.Strata, st.mnt)
	if err != nil {
		return err
	}
	bytesRow.add("strata fetched", float64(t.Fetched))
	bytesRow.add("strata served", float64(t.Served))
	rss, err := peers.PeakRSS(st.pid)
	if err != nil {
		return err
	}
	if r.o.wants(ScenMemory) {
		row(&r.res.Memory, bytesRow.Section, bytesRow.Scenario, bytesRow.System, r.cold.Entries).add("peak RSS", float64(rss))
	}
	return nil
}

// slug turns a name into a file name: lower case letters and digits,
// every other run of characters one '-'.
func slug(s string) string {
	var b strings.Builder
	dash := false
	for _, c := range strings.ToLower(s) {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			b.WriteRune(c)
			dash = false
			continue
		}
		dash = true
	}
	return b.String()
}
