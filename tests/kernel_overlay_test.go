package tests

import (
	"bufio"
	"bytes"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// strata mount --kernel-overlay: strata serves the image read-only and
// open-less from a private mount, kernel overlayfs puts the upper on top.
// The POSIX suite runs on this mode too (posixBackends); these tests cover
// what is its own: the registry image, the upper's format, the private
// mount's life.

// TestKernelOverlayRegistry mounts a lazy image with --kernel-overlay, pins
// its tree, writes through it, and checks the upper is the one strata's own
// union writes: strata's FUSE union over the same image and that upper
// shows what the overlay showed.
func TestKernelOverlayRegistry(t *testing.T) {
	fx := registryFixture(t)
	for _, f := range lazyFormats {
		t.Run(string(f), func(t *testing.T) {
			ref := startRegistry(t, nil) + "/strata/app:" + string(f)
			pushImage(t, ref, lazyImage(t, fx.blobs[f]))
			upper := mkdirs(t, t.TempDir(), "upper")
			m := mountRegistry(t, ref, upper, "--kernel-overlay")
			checkImageTree(t, "--kernel-overlay mount", captureTree(t, m.Dir, viewMerged), fx)
			patched := writeThrough(t, m.Dir, fx.baseFile("usr/lib/big"))
			merged := captureTree(t, m.Dir, viewMerged)
			m.unmount(t)
			checkNoImageMounts(t)
			checkUpper(t, upper, patched)
			again := mountRegistry(t, ref, upper)
			compareTreesNamed(t, "strata's union over the upper --kernel-overlay wrote vs the overlay", "kernel-overlay", "union",
				merged, captureTree(t, again.Dir, viewMerged))
		})
	}
}

// TestKernelOverlayUnmount: a busy overlay keeps the image served after a
// SIGTERM, and a plain umount(8) of the overlay, not strata's, ends strata.
func TestKernelOverlayUnmount(t *testing.T) {
	base := t.TempDir()
	layer := mkdirs(t, base, "layer")
	putFile(t, filepath.Join(layer, "a"), "aaa")
	putFile(t, filepath.Join(layer, "b"), "bbb")
	m := mountStrata(t, []string{layer}, mkdirs(t, base, "upper"), "--kernel-overlay")
	busy, err := os.Open(filepath.Join(m.Dir, "a"))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	select {
	case err := <-m.done:
		t.Fatalf("strata exited (%v) while its overlay was busy: %s", err, m.stderr.String())
	default:
	}
	if got, err := os.ReadFile(filepath.Join(m.Dir, "b")); err != nil || string(got) != "bbb" {
		t.Errorf("read through the busy overlay after SIGTERM: %q, %v", got, err)
	}
	busy.Close()
	if err := unix.Unmount(m.Dir, 0); err != nil {
		t.Fatalf("umount of the overlay: %v", err)
	}
	m.unmount(t) // waits for strata to exit, with status 0
	checkNoImageMounts(t)
}

// checkNoImageMounts fails the test if a private image mount of
// --kernel-overlay outlived its strata process.
func checkNoImageMounts(t *testing.T) {
	t.Helper()
	dir := os.Getenv("STRATA_RUNTIME_DIR")
	if dir == "" {
		dir = "/run/strata"
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && strings.HasPrefix(unescapeMountPath(fields[4]), filepath.Join(dir, "images")+"/") {
			t.Errorf("image mount left behind: %s", sc.Text())
			unix.Unmount(unescapeMountPath(fields[4]), unix.MNT_DETACH)
		}
	}
	left, _ := filepath.Glob(filepath.Join(dir, "images", "image-*"))
	for _, l := range left {
		t.Errorf("image mountpoint left behind: %s", l)
		os.Remove(l)
	}
}

// blobCounter counts the blob requests a registry receives.
type blobCounter struct {
	n    atomic.Int64
	next http.Handler
}

func (c *blobCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.Contains(r.URL.Path, "/blobs/") {
		c.n.Add(1)
	}
	c.next.ServeHTTP(w, r)
}

// TestKernelOverlaySharedImage: two --kernel-overlay mounts of one image
// share one image mount, so the second serves what the first fetched with
// no request; the first process serves the image until the second's
// overlay is gone, even after its own was asked to stop.
func TestKernelOverlaySharedImage(t *testing.T) {
	t.Setenv("STRATA_RUNTIME_DIR", t.TempDir())
	fx := registryFixture(t)
	counter := &blobCounter{}
	host := startRegistry(t, func(next http.Handler) http.Handler { counter.next = next; return counter })
	ref := pushImage(t, host+"/strata/shared:zstd", lazyImage(t, fx.blobs[fmtZstd]))
	base := t.TempDir()
	a := mountRegistry(t, ref, mkdirs(t, base, "a"), "--kernel-overlay", "--prefetch", "none")
	readWant(t, filepath.Join(a.Dir, "etc/passwd"), fx.baseFile("etc/passwd"))

	b := mountRegistry(t, ref, mkdirs(t, base, "b"), "--kernel-overlay", "--prefetch", "none")
	before := counter.n.Load()
	readWant(t, filepath.Join(b.Dir, "etc/passwd"), fx.baseFile("etc/passwd"))
	if n := counter.n.Load() - before; n != 0 {
		t.Errorf("second mount read a file the first had read with %d blob requests, want 0", n)
	}
	la, lb := overlayLower(t, a.Dir), overlayLower(t, b.Dir)
	if la == "" || la != lb {
		t.Errorf("overlay lowers %q and %q: want one shared image mount", la, lb)
	}
	if out, err := exec.Command(strataBin, "stat", "--json", b.Dir).CombinedOutput(); err != nil || !strings.Contains(string(out), `"shared_image": "`+la+`"`) || !strings.Contains(string(out), `"layers": [`) {
		t.Errorf("strata stat of the second mount: %v: %s; want the shared image and its layers", err, out)
	}

	cmdA := a.cmd
	a.cmd = nil // this test stops it
	if err := cmdA.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	select {
	case err := <-a.done:
		t.Fatalf("the serving process exited (%v) while another mount used its image: %s", err, a.stderr.String())
	default:
	}
	if isMounted(a.Dir) {
		t.Errorf("%s still mounted after SIGTERM", a.Dir)
	}
	readWant(t, filepath.Join(b.Dir, "usr/lib/big"), fx.baseFile("usr/lib/big"))
	b.unmount(t)
	select {
	case err := <-a.done:
		if err != nil {
			t.Errorf("serving process exited with %v: %s", err, a.stderr.String())
		}
	case <-time.After(20 * time.Second):
		cmdA.Process.Kill()
		t.Fatalf("the serving process did not exit once the last overlay was gone: %s", a.stderr.String())
	}
	checkNoImageMounts(t)
}

// TestKernelOverlayDeadImageServer: when the process serving an image was
// killed, the next mount of the image replaces its dead mount.
func TestKernelOverlayDeadImageServer(t *testing.T) {
	t.Setenv("STRATA_RUNTIME_DIR", t.TempDir())
	fx := registryFixture(t)
	ref := pushImage(t, startRegistry(t, nil)+"/strata/dead:zstd", lazyImage(t, fx.blobs[fmtZstd]))
	base := t.TempDir()
	a := mountRegistry(t, ref, mkdirs(t, base, "a"), "--kernel-overlay")
	cmdA := a.cmd
	a.cmd = nil
	cmdA.Process.Kill()
	<-a.done
	t.Cleanup(func() { unix.Unmount(a.Dir, unix.MNT_DETACH) })
	c := mountRegistry(t, ref, mkdirs(t, base, "c"), "--kernel-overlay")
	readWant(t, filepath.Join(c.Dir, "usr/lib/big"), fx.baseFile("usr/lib/big"))
	unix.Unmount(a.Dir, unix.MNT_DETACH) // the dead overlay, before the check below
	c.unmount(t)
	checkNoImageMounts(t)
}

func readWant(t *testing.T, p string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("%s: read %d bytes (%v), want the %d bytes of the image", p, len(got), err, len(want))
	}
}

// overlayLower returns the lowerdir of the overlay mounted on dir.
func overlayLower(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || unescapeMountPath(f[4]) != dir {
			continue
		}
		for _, o := range strings.Split(f[len(f)-1], ",") {
			if v, ok := strings.CutPrefix(o, "lowerdir="); ok {
				return v
			}
		}
	}
	return ""
}
