package suite

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/stratafs/strata/bench"
	"github.com/stratafs/strata/bench/images"
	"github.com/stratafs/strata/bench/netshape"
	"github.com/stratafs/strata/bench/peers"
	"github.com/stratafs/strata/bench/registry"
)

// runner is one Run: options, what setup made, and the result.
type runner struct {
	o     Options
	clean *bench.Cleanups
	res   *Result
	reg   *registry.Registry
	links []*linkEnv
	// cold is the image of the cold-start scenarios, local the image of
	// the local ones (the same with Quick).
	cold, local *images.Image
	// big holds the 1 GiB file of the copy-up (nil with Quick); many and
	// tiny are the memory scenario's images (files-100k or, with Quick,
	// files-2k; files-tiny). Each is nil when its scenario does not run.
	big, many, tiny *images.Image
	// stargz is set when stargz-snapshotter is measured (STARGZ_BIN).
	stargz *stargzEnv
	// ctr is set when the containerd sections run.
	ctr *ctrEnv
}

// linkEnv is one link: its relay in front of the registry.
type linkEnv struct {
	link  netshape.Link
	relay *netshape.Relay
}

// ref is repoTag reached through the link's relay.
func (l *linkEnv) ref(repoTag string) string { return l.relay.Addr() + "/" + repoTag }

// Run builds or finds the images, starts the registry and a relay per
// link, measures every selected scenario on every system, interleaved,
// and writes suite.json, suite.md and the plots to o.Out. Everything it
// mounts or starts is torn down before it returns, on error and when ctx
// is cancelled too. An error means no report; failures of single
// measurements are in the report instead.
func Run(ctx context.Context, o Options) (*Result, error) {
	if err := o.setDefaults(); err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("suite: needs root (mounts, chroot, drop_caches)")
	}
	// Extracted files must get the modes in the tar, not mode &^ umask.
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	r := &runner{o: o, clean: &bench.Cleanups{}, res: &Result{Machine: bench.ThisMachine(), Quick: o.Quick, Runs: o.Runs}}
	defer r.clean.RunAll(r.logf)
	if err := r.setup(ctx); err != nil {
		return nil, err
	}
	r.measure(ctx)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("interrupted: %w", err)
	}
	r.res.Machine.LoadEnd = bench.LoadAvg()
	return r.res, r.write()
}

func (r *runner) logf(format string, args ...any) {
	if r.o.Progress != nil {
		fmt.Fprintf(r.o.Progress, "%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
}

func (r *runner) setup(ctx context.Context) error {
	if err := r.freshWork(); err != nil {
		return err
	}
	if err := r.strataBinary(ctx); err != nil {
		return err
	}
	if err := r.images(ctx); err != nil {
		return err
	}
	if err := r.startRegistry(ctx); err != nil {
		return err
	}
	for _, l := range r.o.Links {
		rl, err := netshape.Start(ctx, r.reg.Host, l)
		if err != nil {
			return fmt.Errorf("relay for %s: %w", l, err)
		}
		r.clean.Add(rl.Close)
		r.links = append(r.links, &linkEnv{link: l, relay: rl})
		r.res.Links = append(r.res.Links, l.String())
	}
	if err := r.setupStargz(ctx); err != nil {
		return err
	}
	if err := r.setupContainerd(ctx); err != nil {
		return err
	}
	return r.checkLinks(ctx)
}

// freshWork empties the scratch directory, first detaching anything a
// killed earlier run left mounted below it (RemoveAll would descend
// into a mount).
func (r *runner) freshWork() error {
	var err error
	if r.o.Work, err = filepath.Abs(r.o.Work); err != nil {
		return err
	}
	left := peers.MountsUnder(r.o.Work)
	for i := len(left) - 1; i >= 0; i-- {
		r.logf("detaching %s, left mounted by an earlier run", left[i])
		peers.ForceUnmount(left[i])
	}
	if m := peers.MountsUnder(r.o.Work); len(m) > 0 {
		return fmt.Errorf("suite: %v still mounted under %s", m, r.o.Work)
	}
	if err := os.RemoveAll(r.o.Work); err != nil {
		return err
	}
	return os.MkdirAll(r.o.Work, 0o755)
}

func (r *runner) strataBinary(ctx context.Context) error {
	if r.o.Strata == "" {
		r.o.Strata = filepath.Join(r.o.Work, "strata")
		r.logf("go build -o %s ./cmd/strata", r.o.Strata)
		out, err := exec.CommandContext(ctx, "go", "build", "-o", r.o.Strata, "./cmd/strata").CombinedOutput()
		if err != nil {
			return fmt.Errorf("suite: go build ./cmd/strata (run from the module root): %v: %s", err, strings.TrimSpace(string(out)))
		}
	}
	bin, err := filepath.Abs(r.o.Strata)
	if err != nil {
		return err
	}
	r.o.Strata = bin
	if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		rev := strings.TrimSpace(string(out))
		if exec.Command("git", "diff", "--quiet", "HEAD").Run() != nil {
			rev += " + uncommitted changes"
		}
		r.res.Machine.Tools["strata (git HEAD)"] = rev
	}
	if len(r.o.SnapshotterArgs) > 0 {
		r.res.Machine.Tools["strata-snapshotter serve arguments"] = strings.Join(r.o.SnapshotterArgs, " ")
	}
	for _, t := range [][]string{{"fio", "--version"}, {"fuse-overlayfs", "--version"}, {"/usr/bin/docker-registry", "--version"}} {
		out, err := exec.Command(t[0], t[1:]...).Output()
		if err != nil {
			return fmt.Errorf("suite: %s is not usable (%v): run scripts/deps.sh", t[0], err)
		}
		first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		r.res.Machine.Tools[filepath.Base(t[0])] = first
	}
	return nil
}

// images builds or finds the images and records what they are.
func (r *runner) images(ctx context.Context) error {
	io := images.Options{CacheDir: r.o.ImageCache, Progress: r.o.Progress}
	var set *images.Set
	var err error
	if r.o.Quick {
		set, err = images.BuildQuick(ctx, io)
	} else {
		set, err = images.Build(ctx, io)
	}
	if err != nil {
		return err
	}
	if r.o.Quick {
		r.cold, r.local = set.Image("quick"), set.Image("quick")
	} else {
		r.cold, r.local = set.Image("debian-python"), set.Image("debian-large")
	}
	if r.cold == nil || r.local == nil {
		return fmt.Errorf("suite: images missing from %s", set.CacheDir)
	}
	if err := r.syntheticImages(ctx, io); err != nil {
		return err
	}
	for _, p := range r.pushes() {
		if len(r.res.Images) > 0 && r.res.Images[0].Name == p.im.Name {
			r.res.Images[0].Used += "; " + p.used
			continue
		}
		info := ImageInfo{Name: p.im.Name, Entries: p.im.Entries, Files: p.im.Files, UnpackedBytes: p.im.UnpackedBytes,
			Compressed: map[string]int64{}, Used: p.used}
		for _, v := range p.im.Variants {
			info.Compressed[v.Tag] = v.CompressedBytes
		}
		r.res.Images = append(r.res.Images, info)
	}
	return nil
}

// syntheticImages builds or finds the images made by Go alone: the 1 GiB
// file of the copy-up (not with Quick) and the memory scenario's many and
// tiny file trees, each only when its scenario runs.
func (r *runner) syntheticImages(ctx context.Context, io images.Options) error {
	var names []string
	if r.o.wants(ScenWrites) && !r.o.Quick {
		names = append(names, images.BigFile)
	}
	many := images.Files100k
	if r.o.Quick {
		many = images.Files2k
	}
	if r.o.wants(ScenMemory) {
		names = append(names, many, images.FilesTiny)
	}
	if len(names) == 0 {
		return nil
	}
	set, err := images.BuildSynthetic(ctx, io, names...)
	if err != nil {
		return err
	}
	r.big, r.many, r.tiny = set.Image(images.BigFile), set.Image(many), set.Image(images.FilesTiny)
	return nil
}

// startRegistry starts docker-registry and pushes every variant of the
// images once, as NAME:TAG.
func (r *runner) startRegistry(ctx context.Context) error {
	reg, err := registry.Start(ctx, registry.Options{StorageDir: filepath.Join(r.o.Work, "registry"), RemoveStorage: true})
	if err != nil {
		return err
	}
	r.reg = reg
	r.clean.Add(reg.Stop)
	pushed := map[string]bool{}
	for _, p := range r.pushes() {
		for _, f := range p.formats {
			ref := p.im.Name + ":" + f.Tag()
			if pushed[ref] {
				continue
			}
			v := p.im.Variant(f)
			if v == nil {
				return fmt.Errorf("suite: %s has no %s variant", p.im.Name, f)
			}
			r.logf("push %s to %s", v.Location, reg.Ref(ref))
			if _, err := reg.Push(ctx, v.Location, ref); err != nil {
				return err
			}
			pushed[ref] = true
		}
	}
	return nil
}

// push is an image the selected scenarios need in the registry, the
// formats they read, and what for.
type push struct {
	im      *images.Image
	formats []images.Format
	used    string
}

// pushes lists the images the selected groups need: the cold image always,
// the local one when the local section runs, the synthetic ones in the
// only formats their scenarios read (gzip is what a full pull extracts).
func (r *runner) pushes() []push {
	used := "cold start, full read, bytes, scaling"
	if r.o.wants(ScenContainerd) {
		used += ", containerd"
	}
	out := []push{{r.cold, images.Formats, used}}
	if r.wantsLocal() {
		out = append(out, push{r.local, images.Formats, "warm reads, metadata, writes, memory"})
	}
	if r.big != nil {
		out = append(out, push{r.big, []images.Format{images.Gzip, images.ZstdChunked}, "copy-up of a 1 GiB file"})
	}
	for _, im := range []*images.Image{r.many, r.tiny} {
		if im != nil {
			out = append(out, push{im, []images.Format{images.ZstdChunked}, "memory per 100,000 files"})
		}
	}
	return out
}

func (r *runner) wantsLocal() bool {
	return r.o.wants(ScenWarm) || r.o.wants(ScenMeta) || r.o.wants(ScenWrites)
}

// measure runs the selected groups: cold sections per link, the local
// section, then memory per 100,000 files.
func (r *runner) measure(ctx context.Context) {
	for _, l := range r.links {
		if r.o.wants(ScenCold) || r.o.wants(ScenFullRead) || r.o.wants(ScenBytes) || r.o.wants(ScenScaling) {
			r.coldSection(ctx, l)
		}
		if r.ctr != nil && ctx.Err() == nil {
			r.ctrSection(ctx, l)
		}
	}
	// Peak RSS is read in the cold sections and, when it runs for its own
	// scenarios, the local section; memory per 100,000 files has its own.
	if r.wantsLocal() && ctx.Err() == nil {
		r.localSection(ctx)
	}
	if r.many != nil && ctx.Err() == nil {
		r.filesMemory(ctx)
	}
}
