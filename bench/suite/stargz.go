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

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/stratafs/strata/bench"
	"github.com/stratafs/strata/bench/images"
	"github.com/stratafs/strata/bench/peers"
)

// stargzEnv is what driving stargz-snapshotter needs, found once in setup.
type stargzEnv struct {
	bin   string   // STARGZ_BIN: containerd-stargz-grpc and ctr-remote
	chain string   // chain ID of the cold image's estargz tag: its snapshot's name
	hosts []string // the registry and the relays, reached over plain HTTP
	seq   int      // numbers containers and snapshots
}

func isStargz(system string) bool { return system == sysStargz || system == sysStargzCtr }

// setupStargz enables the stargz systems when STARGZ_BIN is set and a cold
// scenario runs outside quick mode, or says in NotRun why not. A
// STARGZ_BIN that is set but unusable fails the run: the user asked for it.
func (r *runner) setupStargz(ctx context.Context) error {
	bin := os.Getenv("STARGZ_BIN")
	cold := r.o.wants(ScenCold) || r.o.wants(ScenFullRead) || r.o.wants(ScenBytes) || r.o.wants(ScenContainerd)
	switch {
	case bin == "":
		r.res.NotRun = append(r.res.NotRun, "stargz-snapshotter: not run: STARGZ_BIN unset")
		return nil
	case r.o.Quick:
		r.res.NotRun = append(r.res.NotRun, "stargz-snapshotter: not run: quick mode (STARGZ_BIN is set; it runs without -quick)")
		return nil
	case !cold:
		r.res.NotRun = append(r.res.NotRun, "stargz-snapshotter: not run: it applies to the cold, fullread, bytes and containerd scenarios only")
		return nil
	}
	bin, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	if err := peers.EnsureStargz(ctx, bin); err != nil {
		return err
	}
	env := &stargzEnv{bin: bin, hosts: []string{r.reg.Host}}
	for _, l := range r.links {
		env.hosts = append(env.hosts, l.relay.Addr())
	}
	if env.chain, err = r.chainID(ctx, r.cold.Name+":"+images.EStargz.Tag()); err != nil {
		return err
	}
	for _, t := range [][]string{{filepath.Join(bin, peers.StargzGRPC), "-version"}, {"/usr/bin/containerd", "--version"}, {"/usr/sbin/runc", "--version"}} {
		out, err := exec.CommandContext(ctx, t[0], t[1:]...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("suite: %s %s: %v: %s", t[0], t[1], err, out)
		}
		first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		r.res.Machine.Tools[filepath.Base(t[0])] = first
	}
	r.res.Machine.Tools[peers.StargzGRPC] += stargzModule(ctx, filepath.Join(bin, peers.StargzGRPC))
	r.stargz = env
	return nil
}

// stargzModule names the stargz-snapshotter library a binary was built
// with, from its build info: a `go build` of a checkout stamps no version
// into -version's output.
func stargzModule(ctx context.Context, bin string) string {
	out, err := exec.CommandContext(ctx, "go", "version", "-m", bin).Output()
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && (f[0] == "dep" || f[0] == "mod") && f[1] == "github.com/containerd/stargz-snapshotter" {
			return "; built with " + f[1] + " " + f[2]
		}
	}
	return ""
}

// chainID reads the image's config from the registry itself (not through
// a relay, so no link's count sees it) and returns its chain ID.
func (r *runner) chainID(ctx context.Context, repoTag string) (string, error) {
	ref, err := name.ParseReference(r.reg.Ref(repoTag), name.Insecure)
	if err != nil {
		return "", err
	}
	img, err := remote.Image(ref, remote.WithContext(ctx))
	if err != nil {
		return "", fmt.Errorf("suite: read %s: %w", ref, err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return "", err
	}
	var ids []string
	for _, d := range cfg.RootFS.DiffIDs {
		ids = append(ids, d.String())
	}
	return peers.ChainID(ids), nil
}

func (r *runner) stargzSetup() []bench.Field {
	return []bench.Field{
		{Key: "stargz-snapshotter", Value: "a fresh node per run (untimed start, then drop_caches): Debian's containerd with containerd-stargz-grpc " +
			"from STARGZ_BIN as its proxy snapshotter, both with new roots (no content, snapshots or cache); timed from " +
			"`ctr-remote images rpull --plain-http REF` of the estargz tag (default stargz config: prefetch, background fetch)"},
		{Key: "stargz-snapshotter launch", Value: "after the rpull, `ctr snapshots prepare` on the image and its mounts " +
			"(overlayfs over stargz's FUSE layers) mounted on the host; the command is chrooted there, as for the other systems"},
		{Key: "stargz ctr run launch", Value: "after the rpull, `ctr run --rm --snapshotter stargz REF ID CMD`: " +
			"the command in a runc container, as containerd runs it (the container's setup is in the time)"},
	}
}

// stargzMeasure is one run of a stargz system: a fresh node, the image
// pulled lazily, then the scenario's command or the full read.
func (r *runner) stargzMeasure(ctx context.Context, l *linkEnv, sys coldSystem, sc coldScenario, dir string, bytesRow *CountRow) (secs float64, err error) {
	node, err := peers.StartStargz(ctx, r.stargz.bin, filepath.Join(dir, "n"), r.stargz.hosts)
	stop := r.clean.Add(node.Stop)
	defer func() { err = errors.Join(err, stop()) }()
	if err != nil {
		return 0, err
	}
	if err := peers.DropCaches(); err != nil {
		return 0, err
	}
	r.stargz.seq++
	id := fmt.Sprintf("strata-bench-%d-%d", os.Getpid(), r.stargz.seq)
	ref := l.ref(r.cold.Name + ":" + sys.format.Tag())
	before := l.relay.Stats().Down
	start := time.Now()
	if err := node.Pull(ctx, ref); err != nil {
		return 0, err
	}
	var read int64
	switch {
	case sys.name == sysStargzCtr:
		var d time.Duration
		d, err = node.Run(ctx, ref, id, start, sc.want, sc.argv...)
		secs = d.Seconds()
	default:
		read, secs, err = r.stargzChroot(ctx, node, sc, id, filepath.Join(dir, "mnt"), start)
	}
	if err != nil {
		return 0, err
	}
	bytesRow.add("registry (relay)", float64(l.relay.Stats().Down-before))
	if sc.argv == nil {
		bytesRow.add("read by the command", float64(read))
	}
	if err := node.Alive(); err != nil {
		return 0, err
	}
	if r.o.wants(ScenMemory) {
		rss, err := peers.PeakRSS(node.PID())
		if err != nil {
			return 0, err
		}
		row(&r.res.Memory, bytesRow.Section, bytesRow.Scenario, sys.name+" (containerd-stargz-grpc)", r.cold.Entries).add("peak RSS", float64(rss))
	}
	return secs, nil
}

// stargzChroot mounts the pulled image's snapshot on mnt and runs the
// scenario there as the other systems run it: the command chrooted, or
// every file read. It returns the bytes read and the seconds from start.
func (r *runner) stargzChroot(ctx context.Context, node *peers.StargzNode, sc coldScenario, id, mnt string, start time.Time) (read int64, secs float64, err error) {
	umount, err := node.MountImage(ctx, r.stargz.chain, id, mnt)
	if err != nil {
		return 0, 0, err
	}
	stop := r.clean.Add(umount)
	defer func() { err = errors.Join(err, stop()) }()
	if sc.argv != nil {
		d, err := peers.FirstOutput(ctx, mnt, start, sc.want, sc.argv...)
		return 0, d.Seconds(), err
	}
	read, err = peers.ReadEverything(ctx, mnt)
	return read, time.Since(start).Seconds(), err
}
