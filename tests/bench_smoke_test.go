package tests

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stratafs/strata/bench/netshape"
	"github.com/stratafs/strata/bench/peers"
	"github.com/stratafs/strata/bench/suite"
)

// TestBenchSuiteQuick is `make bench-quick` as a smoke test: the whole
// suite, once, on the small image over loopback. It proves the harness
// works (every scenario measured on every system that applies, the report
// written, nothing left mounted or running); it asserts no speed.
func TestBenchSuiteQuick(t *testing.T) {
	dir := t.TempDir()
	work, out := filepath.Join(dir, "work"), filepath.Join(dir, "out")
	var log syncBuffer
	res, err := suite.Run(context.Background(), suite.Options{Quick: true, Links: []netshape.Link{netshape.Loopback},
		Out: out, Work: work, Strata: strataBin, Progress: &log})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("suite log:\n%s", log.String())
		}
	})
	if err != nil {
		t.Fatalf("suite.Run: %v", err)
	}
	assertNothingLeft(t, work)
	for _, m := range res.Missing() {
		t.Errorf("missing: %s", m)
	}
	checkSections(t, res)
	checkCounts(t, res)
	checkFiles(t, out, res)
}

// TestBenchSuiteInterrupted cancels the suite while its local section has
// mounts up (as SIGINT does to the command) and checks that it returns the
// cancellation and leaves nothing mounted or running.
func TestBenchSuiteInterrupted(t *testing.T) {
	dir := t.TempDir()
	work := filepath.Join(dir, "work")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &cancelOn{marker: "local run 1 fuse-overlayfs", cancel: cancel}
	_, err := suite.Run(ctx, suite.Options{Quick: true, Links: []netshape.Link{netshape.Loopback},
		Scenarios: []string{suite.ScenMeta, suite.ScenWarm}, Out: filepath.Join(dir, "out"), Work: work, Strata: strataBin, Progress: w})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("suite.Run after cancel: %v, want context.Canceled; log:\n%s", err, w.String())
	}
	if !w.fired() {
		t.Fatalf("the marker %q never appeared; log:\n%s", w.marker, w.String())
	}
	assertNothingLeft(t, work)
	if _, err := os.Stat(filepath.Join(dir, "out", "suite.json")); err == nil {
		t.Errorf("an interrupted run wrote a report")
	}
}

var wantSections = map[string][]string{
	"Cold start over loopback (quick)": {"cold python3 print(1)", "cold /app/main.py", "full read",
		"scale: 1 containers", "scale: 4 containers", "scale: 16 containers"},
	"Warm reads, metadata, writes (quick)": {"find -ls cold", "find -ls warm", "ls -lR cold", "ls -lR warm",
		"read all, first", "read all, warm", "fio sequential warm", "fio 4k random warm", "untar", "copy-up", "small creates"},
}

var wantSystems = map[string][]string{
	"Cold start over loopback (quick)":     {"full-pull", "strata zstd:chunked", "strata estargz", "strata zstd:chunked kernel-overlay"},
	"Warm reads, metadata, writes (quick)": {"strata", "strata kernel-overlay", "overlayfs", "fuse-overlayfs", "native"},
}

func checkSections(t *testing.T, res *suite.Result) {
	t.Helper()
	if len(res.Sections) != len(wantSections) {
		t.Errorf("%d sections, want %d", len(res.Sections), len(wantSections))
	}
	for _, sec := range res.Sections {
		want, ok := wantSections[sec.Title]
		if !ok {
			t.Errorf("unexpected section %q", sec.Title)
			continue
		}
		if !slices.Equal(sec.Systems, wantSystems[sec.Title]) {
			t.Errorf("%s: systems %v, want %v", sec.Title, sec.Systems, wantSystems[sec.Title])
		}
		var got []string
		for _, sc := range sec.Scenarios {
			got = append(got, sc.Name)
			if len(sc.Results) == 0 {
				t.Errorf("%s / %s: no results", sec.Title, sc.Name)
			}
			for sys, r := range sc.Results {
				if r.Summary == nil || r.Summary.Median <= 0 {
					t.Errorf("%s / %s / %s: no positive time (%+v)", sec.Title, sc.Name, sys, r)
				}
			}
			if _, ok := sc.Ratios[sec.Peers[0]]; !ok {
				t.Errorf("%s / %s: no ratio %s/%s", sec.Title, sc.Name, sec.Subject, sec.Peers[0])
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: scenarios %q, want %q", sec.Title, got, want)
		}
	}
}

// checkCounts wants the bytes each strata mount fetched and served, the
// registry's count, and strata's peak RSS.
func checkCounts(t *testing.T, res *suite.Result) {
	t.Helper()
	found := 0
	for _, r := range res.Bytes {
		if r.Scenario != "cold python3 print(1)" || !strings.HasPrefix(r.System, "strata") {
			continue
		}
		found++
		for _, k := range []string{"registry (relay)", "strata fetched", "strata served"} {
			if s := r.Spreads[k]; s == nil || s.Median <= 0 {
				t.Errorf("bytes %s / %s: %q = %+v, want > 0", r.Scenario, r.System, k, s)
			}
		}
	}
	if found != 3 { // zstd:chunked, estargz, zstd:chunked kernel-overlay
		t.Errorf("%d strata rows of bytes for print(1), want 3", found)
	}
	mem := 0
	for _, r := range res.Memory {
		if s := r.Spreads["peak RSS"]; r.System == "strata" && s != nil && s.Median > 1<<20 {
			mem++
		}
	}
	if mem != 1 {
		t.Errorf("no peak RSS of the local strata mount in %d memory rows", len(res.Memory))
	}
	if len(res.LinkChecks) != 2 {
		t.Errorf("%d link checks, want the full GET and the Range GET on loopback", len(res.LinkChecks))
	}
	why := "stargz-snapshotter: not run: STARGZ_BIN unset"
	if os.Getenv("STARGZ_BIN") != "" {
		why = "stargz-snapshotter: not run: quick mode (STARGZ_BIN is set; it runs without -quick)"
	}
	if !slices.Contains(res.NotRun, why) {
		t.Errorf("not-run list %q does not say why stargz-snapshotter is missing (%q)", res.NotRun, why)
	}
	checkFilesMemory(t, res)
}

// checkFilesMemory wants the quick form of the memory per 100,000 files:
// the peak RSS of a strata mount of files-2k and of files-tiny after each
// stage, and the figure derived from them.
func checkFilesMemory(t *testing.T, res *suite.Result) {
	t.Helper()
	if len(res.FilesMemory) != 2 {
		t.Fatalf("%d stages of memory per 100,000 files, want 2: %+v", len(res.FilesMemory), res.FilesMemory)
	}
	for _, fm := range res.FilesMemory {
		if fm.Image != "files-2k" || fm.Files != 2000 || fm.Tiny != "files-tiny" || fm.TinyFiles != 100 {
			t.Errorf("%s: images %s (%d files) against %s (%d files), want files-2k (2000) against files-tiny (100)",
				fm.Stage, fm.Image, fm.Files, fm.Tiny, fm.TinyFiles)
		}
		for name, s := range map[string]*suite.Spread{fm.Image: fm.PeakRSS, fm.Tiny: fm.TinyRSS} {
			if s == nil || s.Median < 1<<20 {
				t.Errorf("%s: peak RSS of the %s mount %+v, want > 1 MiB", fm.Stage, name, s)
			}
		}
	}
}

func checkFiles(t *testing.T, out string, res *suite.Result) {
	t.Helper()
	md, err := os.ReadFile(filepath.Join(out, "suite.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"## Link check", "strata zstd:chunked/full-pull", "strata/overlayfs", "strata/fuse-overlayfs", "strata kernel-overlay/overlayfs", "kernel:", "## Bytes", "## Memory",
		"## Memory per 100,000 files"} {
		if !bytes.Contains(md, []byte(s)) {
			t.Errorf("suite.md lacks %q", s)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "suite.json")); err != nil {
		t.Error(err)
	}
	if len(res.Plots) != len(wantSections) {
		t.Errorf("plots %v, want one per section", res.Plots)
	}
	for _, p := range res.Plots {
		b, err := os.ReadFile(filepath.Join(out, p))
		if err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
			t.Errorf("plot %s: not a PNG (%v)", p, err)
		}
	}
}

// assertNothingLeft fails if anything is mounted under work or a process
// still names work on its command line (a strata mount, a fuse-overlayfs).
func assertNothingLeft(t *testing.T, work string) {
	t.Helper()
	if m := peers.MountsUnder(work); len(m) > 0 {
		t.Errorf("still mounted under %s: %v", work, m)
		for _, p := range slices.Backward(m) {
			peers.ForceUnmount(p)
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, []byte(work)) {
			t.Errorf("process %s still running: %q", filepath.Dir(p), bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
		}
	}
}

// cancelOn is a progress writer that cancels once a line contains marker.
type cancelOn struct {
	marker string
	cancel func()
	mu     sync.Mutex // guards buf and at
	buf    bytes.Buffer
	at     time.Time
}

func (c *cancelOn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf.Write(p)
	if c.at.IsZero() && bytes.Contains(p, []byte(c.marker)) {
		c.at = time.Now()
		c.cancel()
	}
	return len(p), nil
}

func (c *cancelOn) fired() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.at.IsZero()
}

func (c *cancelOn) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}
