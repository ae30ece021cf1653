package tests

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
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
