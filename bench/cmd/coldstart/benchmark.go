package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/stratafs/strata/bench"
	"github.com/stratafs/strata/bench/peers"
)

// systems in report order; each names the image tag it starts from.
var systems = []string{"full-pull", "zstd:chunked", "estargz"}

type benchmark struct {
	opts  options
	clean *bench.Cleanups
	reg   *countingRegistry
	refs  map[string]string // system -> image reference
	// imageBytes is each system's image size, compressed, all layers.
	imageBytes map[string]int64
	setupNotes [][2]string
	machine    bench.Machine
	runs       []*sysRun
	// The sequential-read scenario: image refs and blob URLs per format.
	seqRefs, seqBlobs map[string]string
	seqRuns           []seqRun
}

func (b *benchmark) setup(ctx context.Context) error {
	b.machine = bench.ThisMachine()
	if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		rev := strings.TrimSpace(string(out))
		if exec.Command("git", "diff", "--quiet", "HEAD").Run() != nil {
			rev += " + uncommitted changes"
		}
		b.machine.Tools["strata (git HEAD)"] = rev
	}
	if out, err := exec.Command("python3", "--version").Output(); err == nil {
		b.machine.Tools["python3 (copied into the image)"] = strings.TrimSpace(string(out))
	}
	if b.opts.build {
		progress("building %s", b.opts.strata)
		if out, err := exec.CommandContext(ctx, "go", "build", "-o", b.opts.strata, "./cmd/strata").CombinedOutput(); err != nil {
			return fmt.Errorf("go build ./cmd/strata: %v: %s", err, out)
		}
	}
	if err := ensureLayers(ctx, b.opts.image, b.opts.rebuild); err != nil {
		return err
	}
	reg, err := startRegistry()
	if err != nil {
		return err
	}
	b.reg = reg
	b.clean.Add(reg.stop)
	repo := reg.addr + "/bench/python"
	b.refs = map[string]string{"full-pull": repo + ":gzip", "zstd:chunked": repo + ":zstd", "estargz": repo + ":esgz"}
	progress("pushing the gzip image to %s", b.refs["full-pull"])
	if err := push(ctx, b.opts.image, b.refs["full-pull"]); err != nil {
		return fmt.Errorf("push: %w", err)
	}
	for _, sys := range systems[1:] {
		progress("strata convert --format %s", sys)
		out, err := exec.CommandContext(ctx, b.opts.strata, "convert", "--format", sys, b.refs["full-pull"], b.refs[sys]).CombinedOutput()
		if err != nil {
			return fmt.Errorf("strata convert --format %s: %v: %s", sys, err, out)
		}
	}
	if b.opts.prioritize {
		if err := b.prioritize(ctx); err != nil {
			return err
		}
	}
	if err := b.describe(ctx); err != nil {
		return err
	}
	if b.opts.seq {
		return b.setupSeq(ctx)
	}
	return nil
}

// describe records the image's layers and each tag's compressed size.
func (b *benchmark) describe(ctx context.Context) error {
	b.imageBytes = map[string]int64{}
	for _, n := range layerNames {
		size, entries := dirSize(filepath.Join(b.opts.image, n))
		b.note("layer "+n, fmt.Sprintf("%d entries, %.1f MB of file data", entries, mb(size)))
	}
	for _, sys := range systems {
		descs, total, err := layerSizes(ctx, b.refs[sys])
		if err != nil {
			return fmt.Errorf("read back %s: %w", b.refs[sys], err)
		}
		b.imageBytes[sys] = total
		parts := make([]string, len(descs))
		for i, d := range descs {
			parts[i] = fmt.Sprintf("%.1f", mb(d.Size))
		}
		b.note("image "+tagOf(b.refs[sys]), fmt.Sprintf("%.1f MB compressed (layers %s MB; %s)",
			mb(total), strings.Join(parts, " + "), descs[0].MediaType))
	}
	b.note("registry", "go-containerregistry pkg/registry in this process on "+b.reg.addr+" (blobs in memory)")
	b.note("command", "chroot MNT /usr/bin/python3 -c 'print(1)', time to its first line of output")
	return nil
}

func (b *benchmark) note(k, v string) {
	progress("%s: %s", k, v)
	b.setupNotes = append(b.setupNotes, [2]string{k, v})
}

// measure runs every system -runs times, interleaved, each run starting
// with a different system.
func (b *benchmark) measure(ctx context.Context) {
	if err := os.MkdirAll(b.opts.work, 0o755); err != nil {
		progress("%v", err)
		return
	}
	for i := range b.opts.runs {
		for k := range systems {
			sys := systems[(i+k)%len(systems)]
			if ctx.Err() != nil {
				return
			}
			s := b.runOne(ctx, sys, i)
			b.runs = append(b.runs, s)
			if s.err != nil {
				progress("run %d %-12s FAILED: %v", i+1, sys, s.err)
				continue
			}
			progress("run %d %-12s ready %6.3fs  first output %6.3fs  fetched %7.1f MB (registry %7.1f MB)  second start %6.3fs  full read %6.3fs (%.1f MB, registry %.1f MB)  load %s",
				i+1, sys, s.ready.Seconds(), s.first.Seconds(), mb(s.fetched), mb(s.registry), s.second.Seconds(), s.full.Seconds(), mb(s.readBytes), mb(s.registryFull), s.load)
		}
	}
}

// sysRun is one cold start of one system, from fresh directories.
type sysRun struct {
	b        *benchmark
	System   string `json:"system"`
	Run      int    `json:"run"`
	ref      string
	dir, mnt string
	start    time.Time
	done     []func() error

	ready, first, full, second          time.Duration
	lowers                              []string // full-pull: the extracted layers
	fetched, served, requests, registry int64
	readBytes, registryFull             int64 // read by, and sent by the registry up to the end of, the full read
	load                                string
	err                                 error
}

func (s *sysRun) teardown(fn func() error) { s.done = append(s.done, s.b.clean.Add(fn)) }

func (b *benchmark) runOne(ctx context.Context, sys string, i int) *sysRun {
	s := &sysRun{b: b, System: sys, Run: i + 1, ref: b.refs[sys],
		dir: filepath.Join(b.opts.work, fmt.Sprintf("run%d-%s", i+1, strings.ReplaceAll(sys, ":", "-")))}
	s.mnt = filepath.Join(s.dir, "mnt")
	ctx, cancel := context.WithTimeout(ctx, b.opts.timeout)
	defer cancel()
	s.err = s.measure(ctx)
	for j := len(s.done) - 1; j >= 0; j-- {
		if err := s.done[j](); err != nil {
			s.err = errors.Join(s.err, fmt.Errorf("teardown: %w", err))
		}
	}
	if peers.FsType(s.mnt) == "" && !b.opts.keep {
		os.RemoveAll(s.dir)
	}
	return s
}

func (s *sysRun) measure(ctx context.Context) error {
	os.RemoveAll(s.dir)
	if err := os.MkdirAll(s.mnt, 0o755); err != nil {
		return err
	}
	if err := peers.DropCaches(); err != nil {
		return err
	}
	s.load = loadAvg1()
	before := s.b.reg.blobs.Load()
	s.start = time.Now()
	var err error
	if s.System == "full-pull" {
		err = s.fullPull(ctx)
	} else {
		err = s.strataMount(ctx)
	}
	if err != nil {
		return err
	}
	if s.first, err = peers.FirstOutput(ctx, s.mnt, s.start, "1\n", peers.PythonPrint...); err != nil {
		return err
	}
	s.registry = s.b.reg.blobs.Load() - before
	// Untimed: the app layer's whiteout must hide the base's /etc/motd.
	if _, err := os.Lstat(filepath.Join(s.mnt, "etc/motd")); !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("/etc/motd visible despite the app layer's whiteout (%v)", err)
	}
	var paused time.Duration // the second start's, which is no part of the full read
	if s.b.opts.second {
		t := time.Now()
		if s.second, err = s.secondStart(ctx); err != nil {
			return fmt.Errorf("second start: %w", err)
		}
		paused = time.Since(t)
	}
	if s.b.opts.fullRead {
		// The same start, the same mount: what a build or a scan of the
		// image would wait for.
		if s.readBytes, err = peers.ReadEverything(ctx, s.mnt); err != nil {
			return fmt.Errorf("full read: %w", err)
		}
		s.full = time.Since(s.start) - paused
		s.registryFull = s.b.reg.blobs.Load() - before
	}
	if s.System == "full-pull" {
		s.fetched = max(s.registry, s.registryFull)
		return nil
	}
	return s.strataStat(ctx)
}

func loadAvg1() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

func tagOf(ref string) string { return ref[strings.LastIndex(ref, ":")+1:] }

func mb(n int64) float64 { return float64(n) / 1e6 }
