package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/stratafs/strata/bench"
)

const subject = "strata"

var peerNames = []string{"overlayfs", "fuse-overlayfs"}

// benchmark is one invocation: the systems, the tree and the report.
type benchmark struct {
	opts    options
	work    string
	j       *bench.Cleanups
	tree    *tree
	systems []system
	scens   []scenario
	rep     *bench.Report
	seen    map[string]int // entries each system showed, from countEntries
}

func (b *benchmark) setup(ctx context.Context, names []string) error {
	b.rep = &bench.Report{Title: "strata union benchmark", Machine: bench.ThisMachine(),
		Systems: names, Subject: subject, Peers: peerNames}
	for _, n := range names {
		sys, err := b.newSystem(ctx, n)
		if err != nil {
			return err
		}
		if sys != nil {
			b.systems = append(b.systems, sys)
		}
	}
	name := fmt.Sprintf("tree-%d-%dM-%d", b.opts.spec().Files, b.opts.spec().BigBytes>>20, b.opts.spec().TarFiles)
	t, err := loadOrBuildTree(ctx, filepath.Join(b.work, name), b.opts.spec())
	if err != nil {
		return err
	}
	b.tree, b.scens = t, scenarios(t)
	b.describe()
	return nil
}

// newSystem returns nil with a report error when strata cannot be built:
// the peers are still worth measuring while strata's union is unfinished.
func (b *benchmark) newSystem(ctx context.Context, name string) (system, error) {
	switch name {
	case "native":
		return native{}, nil
	case "overlayfs":
		return overlay{}, nil
	case "fuse-overlayfs":
		v, err := fuseOverlayVersion()
		if err != nil {
			return nil, err
		}
		b.rep.Machine.Tools["fuse-overlayfs"] = v
		return fuseOverlaySystem(), nil
	case "strata":
		bin, err := b.strataBinary(ctx)
		if err != nil {
			b.rep.Errors = append(b.rep.Errors, "strata not measured: "+err.Error())
			progress("strata not measured: %v", err)
			return nil, nil
		}
		return strataSystem(bin), nil
	}
	return nil, fmt.Errorf("unknown system %q (want native, overlayfs, fuse-overlayfs, strata)", name)
}

// fuseOverlayVersion also checks that the peer is installed at all.
func fuseOverlayVersion() (string, error) {
	out, err := exec.Command("fuse-overlayfs", "--version").Output()
	if err != nil {
		return "", fmt.Errorf("fuse-overlayfs is not usable (%v): apt-get install fuse-overlayfs", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "fuse-overlayfs: version "); ok {
			return v, nil
		}
	}
	return strings.TrimSpace(string(out)), nil
}

func (b *benchmark) strataBinary(ctx context.Context) (string, error) {
	bin, err := filepath.Abs(b.opts.strata)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(bin); err != nil || b.opts.build {
		progress("go build -o %s ./cmd/strata", bin)
		out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/strata").CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("go build ./cmd/strata: %v: %s", err, strings.TrimSpace(string(out)))
		}
	}
	b.rep.Machine.Tools["strata"] = bin
	return bin, nil
}

func (b *benchmark) describe() {
	t, s := b.tree, b.tree.Stats
	add := func(k, format string, args ...any) {
		b.rep.Setup = append(b.rep.Setup, bench.Field{Key: k, Value: fmt.Sprintf(format, args...)})
	}
	add("layer0", "%d entries (%d files, %d dirs, %.0f MB): the first %d files ≤ 16 MiB under %s, plus one %d MiB file",
		s.Entries, s.Files, s.Dirs, float64(s.Bytes)/1e6, t.Spec.Files, strings.Join(sourceRoots, ", "), t.Spec.BigBytes>>20)
	add("layer1", "overlayfs form: %d files rewritten, %d whiteouts (char 0/0), opaque dir %s, %d new files",
		t.Spec.Overrides, t.Spec.Whiteouts, s.OpaqueDir, t.Spec.Added)
	add("runs", "%d per system; systems interleaved, order rotated each run; fresh mount and empty upper dir per run", b.opts.runs)
	add("overlayfs", "mount -t overlay -o lowerdir=L1:L0,upperdir=U,workdir=W (kernel defaults)")
	add("fuse-overlayfs", "fuse-overlayfs -f -o lowerdir=L1:L0,upperdir=U,workdir=W (defaults)")
	add("strata", "strata mount --layer L0 --layer L1 --upper U (defaults)")
	add("native", "layer0 read directly, writes into a plain dir; same file system (%s)", b.work)
}

// measure runs every system once per run, rotating which goes first so
// that drift on the machine (page cache, disk) is spread over all of them.
func (b *benchmark) measure(ctx context.Context) {
	n := len(b.systems)
	for run := range b.opts.runs {
		for k := range n {
			if ctx.Err() != nil {
				return
			}
			b.runSystem(ctx, b.systems[(run+k)%n], run)
		}
	}
}

func (b *benchmark) runSystem(ctx context.Context, sys system, run int) {
	tag := fmt.Sprintf("[run %d/%d] %s", run+1, b.opts.runs, sys.name())
	d, err := newRunDirs(filepath.Join(b.work, "run", sys.name()))
	var m *mounted
	if err == nil {
		m, err = sys.mount(ctx, b.tree, d, b.j)
	}
	if err != nil {
		progress("%s: mount failed: %v", tag, err)
		b.failAll(sys, fmt.Errorf("mount: %w", err))
		return
	}
	b.runScenarios(ctx, tag, sys, m)
	if err := m.stop(); err != nil {
		progress("%s: teardown: %v", tag, err)
		b.rep.Errors = append(b.rep.Errors, fmt.Sprintf("%s: teardown: %v", tag, err))
	}
	if err := os.RemoveAll(d.base); err != nil {
		progress("%s: %v", tag, err)
	}
}

// runScenarios records every scenario's outcome. After a timeout or a lost
// mount the rest of the run is recorded as skipped, not attempted: a hung
// FUSE server would only hang again.
func (b *benchmark) runScenarios(ctx context.Context, tag string, sys system, m *mounted) {
	var broken error
	for _, sc := range b.scens {
		s := b.rep.Scenario(sc.name, sc.doc, sc.bytes)
		if broken != nil {
			s.Record(sys.name(), 0, fmt.Errorf("skipped: %w", broken))
			continue
		}
		secs, err := b.timeOne(ctx, sc, m)
		s.Record(sys.name(), secs, err)
		if err != nil {
			progress("%s %s: ERROR %v", tag, sc.name, err)
			if cerr := m.check(); cerr != nil {
				broken = cerr
			} else if ctx.Err() != nil || strings.Contains(err.Error(), context.DeadlineExceeded.Error()) {
				broken = fmt.Errorf("%s timed out", sc.name)
			}
			continue
		}
		progress("%s %s: %.3f s", tag, sc.name, secs)
		if sc.thenCount {
			b.countEntries(ctx, sys, m)
		}
	}
}

// countEntries notes how many entries a system shows, once per system,
// before any scenario writes. A union that lost entries would walk faster
// for the wrong reason, so write() flags unions that disagree.
func (b *benchmark) countEntries(ctx context.Context, sys system, m *mounted) {
	if _, done := b.seen[sys.name()]; done {
		return
	}
	n := 0
	count := scenario{name: "count entries", run: func(ctx context.Context, m *mounted) (time.Duration, error) {
		out, err := exec.CommandContext(ctx, "find", m.root, "-printf", ".").Output()
		n = len(out)
		return 0, err
	}}
	if _, err := b.timeOne(ctx, count, m); err != nil {
		b.rep.Errors = append(b.rep.Errors, fmt.Sprintf("%s: counting entries: %v", sys.name(), err))
		return
	}
	b.seen[sys.name()] = n
}

// checkSeen reports the counts and fails the unions that disagree.
func (b *benchmark) checkSeen() {
	var parts []string
	want := -1
	for _, name := range b.rep.Systems {
		n, ok := b.seen[name]
		if !ok {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %d", name, n))
		if name == "native" {
			continue
		}
		if want >= 0 && n != want {
			b.rep.Errors = append(b.rep.Errors, fmt.Sprintf("unions disagree on the merged tree: %s shows %d entries, an earlier union %d", name, n, want))
		}
		want = n
	}
	b.rep.Setup = append(b.rep.Setup, bench.Field{Key: "entries seen",
		Value: strings.Join(parts, ", ") + " (native is layer0 alone)"})
}

// stuckGrace is how long a command may outlive its SIGKILL. A process
// waiting on a FUSE request the server never answers cannot die, so past
// this the FUSE connection is aborted, which fails the request.
const stuckGrace = 10 * time.Second

func (b *benchmark) timeOne(ctx context.Context, sc scenario, m *mounted) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, b.opts.timeout)
	defer cancel()
	type result struct {
		d   time.Duration
		err error
	}
	done := make(chan result, 1)
	go func() {
		if sc.prepare != nil {
			if err := sc.prepare(ctx, m); err != nil {
				done <- result{err: fmt.Errorf("prepare: %w", err)}
				return
			}
		}
		d, err := sc.run(ctx, m)
		done <- result{d, err}
	}()
	select {
	case r := <-done:
		return r.d.Seconds(), r.err
	case <-ctx.Done():
	}
	select {
	case r := <-done:
		return r.d.Seconds(), r.err
	case <-time.After(stuckGrace):
	}
	progress("%s: still running %v after being killed; aborting the mount", sc.name, stuckGrace)
	m.abort()
	select {
	case r := <-done:
		return r.d.Seconds(), fmt.Errorf("stuck until the mount was aborted: %w", r.err)
	case <-time.After(stuckGrace):
		// Leave the goroutine behind: nothing more can be done from here.
		return 0, fmt.Errorf("%s: process stuck even after aborting the mount (%w)", sc.name, ctx.Err())
	}
}

func (b *benchmark) failAll(sys system, err error) {
	for _, sc := range b.scens {
		b.rep.Scenario(sc.name, sc.doc, sc.bytes).Record(sys.name(), 0, err)
	}
}

func (b *benchmark) write() error {
	b.rep.Machine.LoadEnd = bench.LoadAvg()
	b.checkSeen()
	b.rep.Targets = targets(b.scens)
	b.rep.Finish()
	if err := os.MkdirAll(b.opts.out, 0o755); err != nil {
		return err
	}
	base := filepath.Join(b.opts.out, "unionbench")
	if b.opts.quick {
		base += "-quick"
	}
	if err := b.rep.WriteJSON(base + ".json"); err != nil {
		return err
	}
	if err := b.rep.WriteMarkdown(base + ".md"); err != nil {
		return err
	}
	progress("wrote %s.json and %s.md", base, base)
	fmt.Print(b.rep.Markdown())
	return nil
}

// targets are the goals. Speed goals become bounds on the time
// ratio: at least 0.9x overlayfs's speed is at most 1/0.9 of its time.
func targets(scens []scenario) []*bench.Target {
	ts := []*bench.Target{
		{Text: "warm metadata ≤ 1.5× overlayfs", Scenario: "meta-warm", Peer: "overlayfs", MaxRatio: 1.5},
		{Text: "warm read of an upper file ≥ 0.9× overlayfs speed", Scenario: "read-upper-warm", Peer: "overlayfs", MaxRatio: 1 / 0.9},
		{Text: "write of an upper file ≥ 0.9× overlayfs speed", Scenario: "write-upper", Peer: "overlayfs", MaxRatio: 1 / 0.9},
	}
	for _, sc := range scens {
		ts = append(ts, &bench.Target{Text: sc.name + " faster than fuse-overlayfs",
			Scenario: sc.name, Peer: "fuse-overlayfs", MaxRatio: 1})
	}
	return ts
}
