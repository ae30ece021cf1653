package tests

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/stratafs/strata/bench/images"
	"github.com/stratafs/strata/bench/netshape"
	"github.com/stratafs/strata/bench/peers"
	"github.com/stratafs/strata/bench/suite"
	"github.com/stratafs/strata/lazy/convert"
)

// These tests start containers for real: Debian's containerd 1.6 and
// runc (installed with apt-get when missing), a private node per test
// (bench/peers), the bench "quick" image (the host's python3 in three
// layers with whiteouts, a directory replaced by a file, hard links)
// plus a fourth layer of data no container reads, pushed to an
// in-process registry on 127.0.0.1 that counts the blob bytes it sends.
//
// The unread layer is what makes laziness visible: python3 -c 'print(1)'
// reads most of the quick image's base layer (the interpreter and its
// libraries: strata mount fetches about 5 of its 8 MB), so without it a
// lazy pull and a full one would differ by too little to tell apart.

// snapshotterBin is strata-snapshotter, built once, beside strataBin.
var snapshotterBin = sync.OnceValues(func() (string, error) {
	bin := filepath.Join(filepath.Dir(strataBin), peers.StrataSnapshotterBin)
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/strata-snapshotter").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build ../cmd/strata-snapshotter: %v: %s", err, out)
	}
	return bin, nil
})

// ctrNode is what the tests do to a node, whatever its snapshotter.
type ctrNode interface {
	Pull(ctx context.Context, ref string) error
	Run(ctx context.Context, ref, id string, start time.Time, want string, argv ...string) (time.Duration, error)
	Alive() error
	Stop() error
}

// blobCounter counts the bytes of blob responses (GET .../blobs/...) a
// registry sends: layers, TOCs, chunks and configs.
type blobCounter struct{ n atomic.Int64 }

func (c *blobCounter) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
			w = &countingWriter{ResponseWriter: w, n: &c.n}
		}
		h.ServeHTTP(w, r)
	})
}

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (w *countingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.n.Add(int64(n))
	return n, err
}

// unusedSize is the size of /data/unused.bin, the unread layer's file.
const unusedSize = 24 << 20

// unusedLayer is a zstd:chunked layer holding /data/unused.bin:
// incompressible, so its blob is about as large as the file.
func unusedLayer(t *testing.T) lazyBlob {
	r := rand.New(rand.NewPCG(3, 5))
	return buildLazyBlob(t, makeLayerTar(t, []tarEnt{tDir("data", 0o755, 0, 0), tFile("data/unused.bin", randData(r, unusedSize), 0o644)}), fmtZstd)
}

// quickRegistry pushes the quick image's zstd:chunked form plus the
// unread layer to a new counting registry and returns its reference,
// the sum of its layer blobs' sizes and the counter (zero after the
// push).
func quickRegistry(t *testing.T) (ref string, layerBytes int64, count *blobCounter) {
	t.Helper()
	set, err := images.BuildQuick(t.Context(), images.Options{})
	if err != nil {
		t.Fatalf("images.BuildQuick: %v", err)
	}
	f := images.ZstdChunked
	v := set.Image("quick").Variant(f)
	if v == nil {
		t.Fatalf("quick image has no %s variant", f)
	}
	loc, err := convert.ParseLocation(v.Location, false)
	if err != nil {
		t.Fatal(err)
	}
	img, err := convert.ReadImage(t.Context(), loc, v1.Platform{OS: "linux", Architecture: runtime.GOARCH})
	if err != nil {
		t.Fatal(err)
	}
	unused := unusedLayer(t)
	if img, err = mutate.Append(img, mutate.Addendum{Layer: blobLayer{unused}, Annotations: unused.annotations}); err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		size, err := l.Size()
		if err != nil {
			t.Fatal(err)
		}
		layerBytes += size
	}
	count = &blobCounter{}
	ref = startRegistry(t, count.wrap) + "/quick:" + f.Tag()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, remote.WithContext(t.Context())); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	count.n.Store(0)
	return ref, layerBytes, count
}

// ensureContainerd installs containerd and runc if missing, or fails.
func ensureContainerd(t *testing.T) {
	t.Helper()
	if err := peers.EnsureContainerd(t.Context()); err != nil {
		t.Fatalf("containerd and runc are needed and could not be installed: %v", err)
	}
}

// stopOnce registers the node's Stop as a cleanup and returns it, to be
// called by the test itself first: the test then checks its result.
func stopOnce(t *testing.T, n ctrNode) func() error {
	stop := sync.OnceValue(n.Stop)
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("stopping the node: %v", err)
		}
	})
	return stop
}

// TestStrataSnapshotterContainerd runs containers through containerd on
// strata's snapshotter: the zstd:chunked image is pulled lazily (the
// registry sends at most half its layers' bytes), python3 runs and
// prints, a second container starts on the same image, and a
// container's writes stay in its own snapshot. Stopping the node leaves
// nothing mounted or running.
func TestStrataSnapshotterContainerd(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	ref, layerBytes, count := quickRegistry(t)
	n, stop, dir := pulledStrataNode(t, ctx, ref)
	runPrint(t, ctx, n, ref, "first")
	// Read right after the first output: background prefetch may fetch
	// more later, but what the first start needed must be a small part.
	if got := count.n.Load(); got <= 0 || got > layerBytes/2 {
		t.Errorf("the registry sent %d blob bytes for pull + print(1); the layers are %d bytes: want more than 0 and at most half (lazy)", got, layerBytes)
	} else {
		t.Logf("registry sent %d blob bytes of %d layer bytes (%.1f%%) for pull + first print(1)", got, layerBytes, 100*float64(got)/float64(layerBytes))
	}
	runPrint(t, ctx, n, ref, "second")
	checkIsolated(t, ctx, n, ref)
	if err := n.Alive(); err != nil {
		t.Errorf("node: %v", err)
	}
	if err := stop(); err != nil {
		t.Errorf("stopping the node: %v", err)
	}
	assertNothingLeft(t, dir)
}

// TestContainerdOverlayNode runs the same containers on containerd's
// own overlayfs snapshotter, the benchmarks' peer: `ctr images pull`
// downloads every layer (the registry sends at least the layers' bytes)
// and the containers behave as on strata's snapshotter.
func TestContainerdOverlayNode(t *testing.T) {
	ensureContainerd(t)
	ref, layerBytes, count := quickRegistry(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	n, stop, dir := pulledOverlayNode(t, ctx, ref)
	if got := count.n.Load(); got < layerBytes {
		t.Errorf("the registry sent %d blob bytes for a full pull; the layers are %d bytes", got, layerBytes)
	}
	runPrint(t, ctx, n, ref, "first")
	runPrint(t, ctx, n, ref, "second")
	checkIsolated(t, ctx, n, ref)
	if err := stop(); err != nil {
		t.Errorf("stopping the node: %v", err)
	}
	assertNothingLeft(t, dir)
}

// pulledOverlayNode starts a node with containerd's own overlayfs
// snapshotter in a new directory and pulls ref into it (every layer
// downloaded). It returns the node, its stop (see stopOnce) and its
// directory.
func pulledOverlayNode(t *testing.T, ctx context.Context, ref string) (*peers.Node, func() error, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "node")
	n, err := peers.StartContainerd(ctx, dir)
	stop := stopOnce(t, n)
	if err != nil {
		t.Fatalf("StartContainerd: %v", err)
	}
	if err := n.Pull(ctx, ref); err != nil {
		t.Fatalf("pull: %v", err)
	}
	return n, stop, dir
}

// containerID is unique per test and process, so that a container left
// by a killed run is never mistaken for this one's.
func containerID(t *testing.T, what string) string {
	return fmt.Sprintf("%s-%d-%s", strings.ToLower(t.Name()), os.Getpid(), what)
}

func runPrint(t *testing.T, ctx context.Context, n ctrNode, ref, what string) {
	t.Helper()
	d, err := n.Run(ctx, ref, containerID(t, what), time.Now(), "1\n", peers.PythonPrint...)
	if err != nil {
		t.Fatalf("%s container: %v", what, err)
	}
	t.Logf("%s container: first output after %v", what, d.Round(time.Millisecond))
}

// writer changes the image in every way a container can: appends to a
// file of the base layer, creates a file, deletes a hard-linked file,
// makes a directory.
const writer = `import os
open('/etc/passwd', 'a').write('leak:x:9:9::/:/bin/sh\n')
open('/leak', 'w').write('x')
os.remove('/usr/share/quick/hello-link.txt')
os.mkdir('/usr/share/quick/newdir')
print('wrote')`

// reader prints "clean" if it sees the image as built (the layers'
// whiteouts applied, none of writer's changes), else what differs. It is
// a format: %d is unusedSize.
const reader = `import os
bad = []
if 'leak' in open('/etc/passwd').read(): bad.append('/etc/passwd changed')
if not open('/etc/passwd').read().startswith('root:x:0:0'): bad.append('/etc/passwd lost its first line')
if os.path.exists('/leak'): bad.append('/leak exists')
if not os.path.exists('/usr/share/quick/hello-link.txt'): bad.append('hello-link.txt deleted')
elif os.stat('/usr/share/quick/hello.txt').st_ino != os.stat('/usr/share/quick/hello-link.txt').st_ino: bad.append('hard links differ')
if os.path.exists('/usr/share/quick/newdir'): bad.append('newdir exists')
if os.path.exists('/etc/motd'): bad.append('/etc/motd not whited out')
if os.path.exists('/usr/share/quick/old'): bad.append('old/ not whited out')
if not os.path.isfile('/usr/share/quick/swap'): bad.append('swap is not a file')
if open('/usr/share/quick/hello.txt').read() != 'hello from the base layer\n': bad.append('hello.txt content')
if os.path.getsize('/data/unused.bin') != %d: bad.append('/data/unused.bin size')
print('clean' if not bad else 'leaked: ' + '; '.join(bad))`

// checkIsolated runs writer in one container and reader in the next on
// the same image: the first container's writes must not reach the image.
func checkIsolated(t *testing.T, ctx context.Context, n ctrNode, ref string) {
	t.Helper()
	if _, err := n.Run(ctx, ref, containerID(t, "writer"), time.Now(), "wrote\n", "/usr/bin/python3", "-c", writer); err != nil {
		t.Fatalf("writer container: %v", err)
	}
	if _, err := n.Run(ctx, ref, containerID(t, "reader"), time.Now(), "clean\n", "/usr/bin/python3", "-c", fmt.Sprintf(reader, unusedSize)); err != nil {
		t.Errorf("reader container after the writer: %v", err)
	}
}

// TestNodeStopRemovesRunningContainer starts a container that would run
// for ten minutes, detached, outside Run (as an interrupted benchmark
// leaves one), and checks that Stop kills it, its shim and containerd,
// and leaves nothing mounted.
func TestNodeStopRemovesRunningContainer(t *testing.T) {
	ensureContainerd(t)
	ref, _, _ := quickRegistry(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	n, stop, dir := pulledOverlayNode(t, ctx, ref)
	marker := fmt.Sprintf("strata-left-%d", os.Getpid())
	out, err := exec.CommandContext(ctx, "ctr", "-a", n.Sock, "-n", peers.NodeNamespace, "run", "-d", "--snapshotter", peers.OverlaySnapshotter,
		"--runc-root", filepath.Join(dir, "runc"), "--fifo-dir", filepath.Join(dir, "fifo"), ref, containerID(t, "left"), "/usr/bin/python3", "-c", "import time; time.sleep(600) # "+marker).CombinedOutput()
	if err != nil {
		t.Fatalf("ctr run -d: %v: %s", err, out)
	}
	// ctr run -d returns once the task is started: its python3 may not
	// have exec'd yet (runc's init names no marker).
	for deadline := time.Now().Add(10 * time.Second); len(processesNaming(marker)) != 1; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the detached container's python3 is not running after 10 s (processes naming %s: %v)", marker, processesNaming(marker))
		}
	}
	if err := stop(); err != nil {
		t.Errorf("stopping the node: %v", err)
	}
	if p := processesNaming(marker); len(p) > 0 {
		t.Errorf("the container's process outlived the node: %v", p)
	}
	assertNothingLeft(t, dir)
}

// processesNaming lists the PIDs whose command line contains s.
func processesNaming(s string) []string {
	var pids []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(b), s) {
			pids = append(pids, filepath.Base(filepath.Dir(p)))
		}
	}
	return pids
}

// TestBenchSuiteContainerd runs the suite's containerd scenario once on
// the quick image (-quick -scenarios containerd; plain -quick leaves it
// out): strata's snapshotter and containerd's overlayfs, each on a fresh
// node, cold and second start, the ratio, the registry's bytes, and
// nothing left behind. It asserts no speed.
func TestBenchSuiteContainerd(t *testing.T) {
	bin, err := snapshotterBin()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	work, out := filepath.Join(dir, "work"), filepath.Join(dir, "out")
	var log syncBuffer
	res, err := suite.Run(t.Context(), suite.Options{Quick: true, Links: []netshape.Link{netshape.Loopback},
		Scenarios: []string{suite.ScenContainerd}, Out: out, Work: work, Strata: strataBin, Snapshotter: bin, Progress: &log})
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
	if len(res.Sections) != 1 {
		t.Fatalf("%d sections, want the containerd one", len(res.Sections))
	}
	sec := res.Sections[0]
	if want := "Container start through containerd over loopback (quick)"; sec.Title != want {
		t.Errorf("section %q, want %q", sec.Title, want)
	}
	if want := []string{"strata snapshotter", "containerd overlayfs"}; !slices.Equal(sec.Systems, want) {
		t.Errorf("systems %v, want %v", sec.Systems, want)
	}
	var names []string
	for _, sc := range sec.Scenarios {
		names = append(names, sc.Name)
		if _, ok := sc.Ratios["containerd overlayfs"]; !ok {
			t.Errorf("%s: no ratio strata snapshotter/containerd overlayfs", sc.Name)
		}
	}
	if want := []string{"cold ctr run print(1)", "second ctr run print(1)"}; !slices.Equal(names, want) {
		t.Errorf("scenarios %q, want %q", names, want)
	}
	rows := 0
	for _, r := range res.Bytes {
		if s := r.Spreads["registry (relay)"]; s != nil && s.Median > 0 {
			rows++
		}
	}
	if rows != 2 {
		t.Errorf("%d systems with the registry's bytes, want 2: %+v", rows, res.Bytes)
	}
	md, err := os.ReadFile(filepath.Join(out, "suite.md"))
	if err != nil || !strings.Contains(string(md), "strata snapshotter/containerd overlayfs") {
		t.Errorf("suite.md lacks the ratio column (%v)", err)
	}
}

// TestSnapshotterRestartKeepsContainers restarts strata's snapshotter,
// run with --detached-mounts, under a running container: the container
// still reads its image (files it had not read before too), a new
// container starts on the image after the restart, and another after the
// mount's process is killed; stopping the node leaves nothing mounted or
// running.
func TestSnapshotterRestartKeepsContainers(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	ref, _, _ := quickRegistry(t)
	n, stop, dir := pulledStrataNode(t, ctx, ref, "--detached-mounts")
	runPrint(t, ctx, n, ref, "first")
	id := containerID(t, "kept")
	ctr := func(args ...string) ([]byte, error) {
		return exec.CommandContext(ctx, "ctr", append([]string{"-a", n.Sock, "-n", peers.NodeNamespace}, args...)...).CombinedOutput()
	}
	marker := fmt.Sprintf("strata-kept-%d", os.Getpid())
	if out, err := ctr("run", "-d", "--snapshotter", n.Snapshotter, "--runc-root", filepath.Join(dir, "runc"), "--fifo-dir", filepath.Join(dir, "fifo"),
		ref, id, "/usr/bin/python3", "-c", "import time; time.sleep(600) # "+marker); err != nil {
		t.Fatalf("ctr run -d: %v: %s", err, out)
	}
	for deadline := time.Now().Add(10 * time.Second); len(processesNaming(marker)) != 1; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the detached container's python3 is not running after 10 s")
		}
	}
	if err := n.RestartSnapshotter(); err != nil {
		t.Fatalf("restarting the snapshotter: %v", err)
	}
	// Files the container has not read yet: one of the base layer, and
	// the whole of a layer nothing has read, fetched now from the registry.
	read := fmt.Sprintf("print(open('/usr/share/quick/hello.txt').read(), end=''); print(len(open('/data/unused.bin', 'rb').read()) == %d)", unusedSize)
	out, err := ctr("task", "exec", "--exec-id", "read", id, "/usr/bin/python3", "-c", read)
	if want := "hello from the base layer\nTrue\n"; err != nil || string(out) != want {
		t.Errorf("after the restart, reading the image in the running container: %v: %q, want %q", err, out, want)
	}
	runPrint(t, ctx, n, ref, "after-restart")
	// A mount whose process died is served anew for the next container.
	var servers []string
	for _, pid := range processesNaming("serve-mount") {
		if b, err := os.ReadFile("/proc/" + pid + "/cmdline"); err == nil && strings.Contains(string(b), dir) {
			servers = append(servers, pid)
		}
	}
	if len(servers) != 1 {
		t.Fatalf("%d serve-mount processes, want 1: %v", len(servers), servers)
	}
	if pid, err := strconv.Atoi(servers[0]); err != nil || syscall.Kill(pid, syscall.SIGKILL) != nil {
		t.Fatalf("kill serve-mount %s: %v", servers[0], err)
	}
	runPrint(t, ctx, n, ref, "after-kill")
	if err := stop(); err != nil {
		t.Errorf("stopping the node: %v", err)
	}
	assertNothingLeft(t, dir)
}

// pulledStrataNode starts a node on strata's snapshotter (serve gets
// serveArgs) in a directory of the test's, and pulls ref into it. It
// returns the node, its Stop (a cleanup too), and its directory.
func pulledStrataNode(t *testing.T, ctx context.Context, ref string, serveArgs ...string) (*peers.StrataNode, func() error, string) {
	t.Helper()
	ensureContainerd(t)
	bin, err := snapshotterBin()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "node")
	n, err := peers.StartStrataNode(ctx, bin, dir, serveArgs...)
	stop := stopOnce(t, n)
	if err != nil {
		t.Fatalf("StartStrataNode: %v", err)
	}
	if err := n.Pull(ctx, ref); err != nil {
		t.Fatalf("pull: %v", err)
	}
	return n, stop, dir
}
