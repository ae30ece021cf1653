package suite

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/stratafs/strata/bench"
	"github.com/stratafs/strata/bench/images"
	"github.com/stratafs/strata/bench/peers"
)

// localInputs are the local section's inputs, made once: the image's
// layers extracted in overlayfs form, the merged tree as a plain
// directory (native), a tarball to untar, and the image's largest file;
// and the 1 GiB file's image, extracted, unless Quick.
type localInputs struct {
	image   lower
	tarball string
	tarN    int
	big     string // path of the largest regular file, relative to the root
	bigSize int64
	gib     *lower // the image holding images.BigFilePath; nil with Quick
}

// lower is an image as each local system mounts it.
type lower struct {
	ref    string   // strata: the zstd:chunked tag, registry on loopback
	layers []string // overlayfs, fuse-overlayfs: the gzip layers extracted
	native string   // native: the merged tree copied ("" if not made)
}

var localSystems = []string{sysStrata, sysStrataKov, sysOverlay, sysFuseOverlay, sysNative}

func (r *runner) localSection(ctx context.Context) {
	sec := &bench.Report{Title: fmt.Sprintf("Warm reads, metadata, writes (%s)", r.local.Name), Machine: r.res.Machine,
		Systems: localSystems, Subject: sysStrata, Peers: []string{sysOverlay, sysFuseOverlay}, Also: []string{sysStrataKov}}
	r.res.Sections = append(r.res.Sections, sec)
	in, err := r.localInputs(ctx)
	if err != nil {
		sec.Errors = append(sec.Errors, "inputs: "+err.Error())
		r.res.Errors = append(r.res.Errors, "local section: "+err.Error())
		return
	}
	sec.Setup = []bench.Field{
		{Key: "image", Value: fmt.Sprintf("%s: %d entries, %.0f MB unpacked, %d layers", r.local.Name, r.local.Entries, float64(r.local.UnpackedBytes)/1e6, len(in.image.layers))},
		{Key: "strata", Value: "`strata mount --upper U --cache FRESH` of the zstd-chunked tag, registry on loopback (no relay)"},
		{Key: "strata kernel-overlay", Value: "the same with `--kernel-overlay`: strata serves the image read-only and open-less, kernel overlayfs puts U on top"},
		{Key: "overlayfs / fuse-overlayfs", Value: "the gzip layers extracted once (overlayfs form), kernel-default options"},
		{Key: "native", Value: "the merged tree copied into a plain directory; writes go to a plain scratch directory"},
		{Key: "large file", Value: fmt.Sprintf("/%s, %.1f MB (the image's largest; the fio and copy-up file)", in.big, float64(in.bigSize)/1e6)},
		{Key: "runs", Value: fmt.Sprintf("%d; a fresh mount and upper per system per run, systems interleaved, order rotated", r.o.Runs)},
	}
	if in.gib != nil {
		sec.Setup = append(sec.Setup, bench.Field{Key: "1 GiB file", Value: fmt.Sprintf("/%s in %s (one layer, half-compressible data): "+
			"a mount of its own per system per run, after the local steps", images.BigFilePath, images.BigFile)})
	}
	steps := r.localSteps(in)
	for run := range r.o.Runs {
		for k := range localSystems {
			if ctx.Err() != nil {
				return
			}
			r.localOne(ctx, sec, in, steps, localSystems[(run+k)%len(localSystems)], run)
		}
	}
	sec.Finish()
}

func (r *runner) localInputs(ctx context.Context) (*localInputs, error) {
	base := filepath.Join(r.o.Work, "local")
	in := &localInputs{tarball: filepath.Join(base, "untar.tar")}
	r.logf("local: extracting %s", r.local.Name)
	var err error
	if in.image, err = r.extracted(ctx, r.local, filepath.Join(base, "layers")); err != nil {
		return nil, err
	}
	in.image.native = filepath.Join(base, "native")
	if err := r.copyMerged(ctx, in.image.layers, in.image.native, filepath.Join(base, "merge")); err != nil {
		return nil, err
	}
	if r.big != nil && r.o.wants(ScenWrites) {
		r.logf("local: extracting %s", r.big.Name)
		gib, err := r.extracted(ctx, r.big, filepath.Join(base, "gib-layers"))
		if err != nil {
			return nil, err
		}
		in.gib = &gib
	}
	if err := in.findBig(); err != nil {
		return nil, err
	}
	return in, in.makeTarball(ctx, r.o.sizes().untarFiles)
}

// extracted is im as the local systems mount it: its gzip layers pulled
// from the registry and extracted under dir, its zstd:chunked reference.
func (r *runner) extracted(ctx context.Context, im *images.Image, dir string) (lower, error) {
	layers, err := peers.FullPull(ctx, r.reg.Ref(im.Name+":"+images.Gzip.Tag()), dir)
	return lower{ref: r.reg.Ref(im.Name + ":" + images.ZstdChunked.Tag()), layers: layers}, err
}

// copyMerged mounts overlayfs over the layers and copies the merged tree
// into dst: the image as a plain directory, whiteouts applied.
func (r *runner) copyMerged(ctx context.Context, layers []string, dst, scratch string) error {
	mnt := filepath.Join(scratch, "mnt")
	if err := peers.MountOverlay(mnt, filepath.Join(scratch, "upper"), filepath.Join(scratch, "work"), layers); err != nil {
		return err
	}
	stop := r.clean.Add(func() error { return peers.Unmount(mnt) })
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return errors.Join(err, stop())
	}
	_, err := bench.Shell(ctx, `tar -C "$1" -cf - . | tar -C "$2" -xpf -`, mnt, dst)
	return errors.Join(err, stop(), os.RemoveAll(scratch))
}

func (in *localInputs) findBig() error {
	err := filepath.WalkDir(in.image.native, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		info, err := d.Info()
		if err == nil && info.Size() > in.bigSize {
			in.big, in.bigSize = strings.TrimPrefix(p, in.image.native+"/"), info.Size()
		}
		return err
	})
	if err == nil && in.bigSize == 0 {
		err = fmt.Errorf("suite: no regular file in %s", in.image.native)
	}
	return err
}

// makeTarball tars the first n regular files found in the tree.
func (in *localInputs) makeTarball(ctx context.Context, n int) error {
	var files []string
	filepath.WalkDir(in.image.native, func(p string, d fs.DirEntry, err error) error {
		if err != nil || len(files) >= n {
			return fs.SkipAll
		}
		if d.Type().IsRegular() {
			files = append(files, strings.TrimPrefix(p, in.image.native+"/"))
		}
		return nil
	})
	in.tarN = len(files)
	list := in.tarball + ".list"
	if err := os.WriteFile(list, []byte(strings.Join(files, "\x00")+"\x00"), 0o644); err != nil {
		return err
	}
	_, err := bench.Time(ctx, "tar", "-C", in.image.native, "--no-recursion", "--null", "-T", list, "-cf", in.tarball)
	return err
}

// localMount is one system ready for the local steps.
type localMount struct {
	root, write string // the tree read; where writes go
	pid         int    // the FUSE server's, 0 for kernel and native
	stop        func() error
}

// localMount mounts img for sys on dir/mnt, with a fresh upper (and
// cache, for strata).
func (r *runner) localMount(ctx context.Context, img lower, sys, dir string) (*localMount, error) {
	m := &localMount{root: filepath.Join(dir, "mnt"), stop: func() error { return nil }}
	m.write = m.root
	upper, work := filepath.Join(dir, "upper"), filepath.Join(dir, "work")
	for _, p := range []string{m.root, upper, work} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			return nil, err
		}
	}
	var d *peers.Daemon
	switch sys {
	case sysNative:
		m.root, m.write = img.native, filepath.Join(dir, "scratch")
		return m, os.MkdirAll(m.write, 0o755)
	case sysOverlay:
		if err := peers.MountOverlay(m.root, upper, work, img.layers); err != nil {
			return nil, err
		}
		m.stop = r.clean.Add(func() error { return peers.Unmount(m.root) })
		return m, nil
	case sysStrata, sysStrataKov:
		args := []string{"--upper", upper, "--cache", filepath.Join(dir, "cache")}
		if sys == sysStrataKov {
			args = append(args, "--kernel-overlay")
		}
		d = peers.Strata(r.o.Strata, args, img.ref, m.root, dir)
	default:
		d = peers.FuseOverlayfs(m.root, upper, work, dir, img.layers)
	}
	m.stop = r.clean.Add(d.Stop)
	if err := d.Start(ctx); err != nil {
		return nil, errors.Join(err, m.stop())
	}
	m.pid = d.PID()
	return m, nil
}

// localOne mounts one system afresh and runs every selected step on it,
// in order: the order is what makes a pass cold or warm.
func (r *runner) localOne(ctx context.Context, sec *bench.Report, in *localInputs, steps []localStep, sys string, run int) {
	dir := filepath.Join(r.o.Work, "local", fmt.Sprintf("run%d-%s", run, slug(sys)))
	m, err := r.localMount(ctx, in.image, sys, dir)
	for _, st := range steps {
		if !r.o.wants(st.group) || !applies(st.name, sys) {
			continue
		}
		s := sec.Scenario(st.name, st.doc, st.bytes)
		if err != nil {
			s.Record(sys, 0, fmt.Errorf("mount: %w", err))
			continue
		}
		secs, serr := r.localStep(ctx, st, m)
		s.Record(sys, secs, serr)
		if serr != nil {
			r.logf("local run %d %s %s: ERROR %v", run+1, sys, st.name, serr)
		} else {
			r.logf("local run %d %-15s %-22s %7.3f s", run+1, sys, st.name, secs)
		}
	}
	if err == nil {
		r.localMemory(sec, sys, m)
		if serr := m.stop(); serr != nil {
			sec.Errors = append(sec.Errors, fmt.Sprintf("%s run %d: teardown: %v", sys, run+1, serr))
		}
	}
	r.remove(dir)
	if in.gib != nil && applies(stepCopyUpGiB, sys) && ctx.Err() == nil {
		r.copyUpGiB(ctx, sec, *in.gib, sys, run)
	}
}

func (r *runner) localStep(ctx context.Context, st localStep, m *localMount) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, r.o.Timeout)
	defer cancel()
	if st.prepare != nil {
		if err := st.prepare(ctx, m); err != nil {
			return 0, fmt.Errorf("prepare: %w", err)
		}
	}
	d, err := st.run(ctx, m)
	return d.Seconds(), err
}

// localMemory records the FUSE server's peak RSS after the steps: strata
// has by then walked and read the whole image.
func (r *runner) localMemory(sec *bench.Report, sys string, m *localMount) {
	if m.pid == 0 || !r.o.wants(ScenMemory) {
		return
	}
	rss, err := peers.PeakRSS(m.pid)
	if err != nil {
		r.res.Errors = append(r.res.Errors, fmt.Sprintf("%s: peak RSS: %v", sys, err))
		return
	}
	row(&r.res.Memory, sec.Title, "after every local step", sys, r.local.Entries).add("peak RSS", float64(rss))
}
