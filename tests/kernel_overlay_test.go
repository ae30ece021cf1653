package tests

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stratafs/strata/status"
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
	t.Setenv("STRATA_RUNTIME_DIR", t.TempDir())
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
	t.Setenv("STRATA_RUNTIME_DIR", t.TempDir())
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

// checkNoImageMounts fails the test if an image mount of --kernel-overlay
// is left 10 s after the last overlay on it was unmounted (its image
// server notices at once). The directories may stay: a mount namespace
// made meanwhile (ip netns exec, a container) holds copies of the mounts
// of its time, and rmdir of a mountpoint there fails.
func checkNoImageMounts(t *testing.T) {
	t.Helper()
	dir := os.Getenv("STRATA_RUNTIME_DIR")
	if dir == "" {
		dir = "/run/strata"
	}
	images := filepath.Join(dir, "images") + "/"
	var left []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		left = left[:0]
		f, err := os.Open("/proc/self/mountinfo")
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) > 4 && strings.HasPrefix(unescapeMountPath(fields[4]), images) {
				left = append(left, unescapeMountPath(fields[4]))
			}
		}
		f.Close()
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, p := range left {
		log, _ := os.ReadFile(p + ".log")
		t.Errorf("image mount left behind: %s (image server's log: %s)", p, log)
		unix.Unmount(p, unix.MNT_DETACH)
	}
}

// TestKernelOverlaySharedImage: two --kernel-overlay mounts of one image
// share one image mount, so the second serves what the first fetched with
// no request. Each mount process ends when its own overlay is unmounted;
// the image server ends after the last one.
func TestKernelOverlaySharedImage(t *testing.T) {
	t.Setenv("STRATA_RUNTIME_DIR", t.TempDir())
	fx := registryFixture(t)
	counter := &countingHandler{only: "/blobs/"}
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
	time.Sleep(1200 * time.Millisecond) // the image server's status is rewritten every second
	if out, err := exec.Command(strataBin, "stat", "--json", b.Dir).CombinedOutput(); err != nil || !strings.Contains(string(out), `"shared_image": "`+la+`"`) || !strings.Contains(string(out), `"bytes_fetched"`) {
		t.Errorf("strata stat of the second mount: %v: %s; want the shared image and its layers' counters", err, out)
	}

	a.unmount(t) // strata umount; the process must exit 0 while b still uses the image
	readWant(t, filepath.Join(b.Dir, "usr/lib/big"), fx.baseFile("usr/lib/big"))
	b.unmount(t)
	checkNoImageMounts(t)
}

// TestKernelOverlayDeadImageServer: when an image server was killed, the
// next mount of the image serves it anew.
func TestKernelOverlayDeadImageServer(t *testing.T) {
	runtime := t.TempDir()
	t.Setenv("STRATA_RUNTIME_DIR", runtime)
	fx := registryFixture(t)
	ref := pushImage(t, startRegistry(t, nil)+"/strata/dead:zstd", lazyImage(t, fx.blobs[fmtZstd]))
	base := t.TempDir()
	a := mountRegistry(t, ref, mkdirs(t, base, "a"), "--kernel-overlay")
	img := overlayLower(t, a.Dir)
	st, err := status.Read(runtime, img)
	for deadline := time.Now().Add(5 * time.Second); err != nil && time.Now().Before(deadline); st, err = status.Read(runtime, img) {
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("image server's status: %v", err)
	}
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
		t.Fatalf("kill the image server (pid %d): %v", st.PID, err)
	}
	time.Sleep(200 * time.Millisecond)
	c := mountRegistry(t, ref, mkdirs(t, base, "c"), "--kernel-overlay")
	readWant(t, filepath.Join(c.Dir, "usr/lib/big"), fx.baseFile("usr/lib/big"))
	a.unmount(t) // its overlay sits on the dead mount; strata umount still ends it
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

// TestScanFeeds: a walk that reads every file of a lazy image, through
// --kernel-overlay or strata's own union, reads every byte right, and once
// its reads look like a scan, strata hands the small files of the
// directories it lists to the page cache ahead of their reads (bytes_fed).
// In the union, a fed file rewritten afterwards reads back as written.
func TestScanFeeds(t *testing.T) {
	t.Setenv("STRATA_RUNTIME_DIR", t.TempDir())
	r := rand.New(rand.NewPCG(61, 62))
	var ents []tarEnt
	want := map[string][]byte{}
	for d := range 12 {
		dir := fmt.Sprintf("d%02d", d)
		ents = append(ents, tDir(dir, 0o755, 0, 0))
		for f := range 25 {
			p := fmt.Sprintf("%s/f%02d", dir, f)
			data := randData(r, 2000+r.IntN(6000))
			ents = append(ents, tFile(p, data, 0o644))
			want[p] = data
		}
	}
	for _, f := range lazyFormats {
		blob := buildLazyBlob(t, makeLayerTar(t, ents), f)
		ref := pushImage(t, startRegistry(t, nil)+"/strata/scan:"+string(f), lazyImage(t, []lazyBlob{blob}))
		for _, mode := range []string{"kernel-overlay", "union"} {
			t.Run(string(f)+"/"+mode, func(t *testing.T) {
				upper := mkdirs(t, t.TempDir(), "upper")
				var extra []string
				if mode == "kernel-overlay" {
					extra = append(extra, "--kernel-overlay")
				}
				m := mountRegistry(t, ref, upper, extra...)
				n := 0
				err := filepath.WalkDir(m.Dir, func(p string, d fs.DirEntry, err error) error {
					if err != nil || !d.Type().IsRegular() {
						return err
					}
					rel, _ := filepath.Rel(m.Dir, p)
					got, err := os.ReadFile(p)
					if err != nil || !bytes.Equal(got, want[rel]) {
						t.Errorf("%s: %d bytes, %v; want its %d bytes", rel, len(got), err, len(want[rel]))
					}
					n++
					return nil
				})
				if err != nil || n != len(want) {
					t.Fatalf("walk read %d files (%v); want %d", n, err, len(want))
				}
				waitStat(t, m.Dir, "small files fed to the page cache", func(st status.Mount) bool {
					return layerSum(st, func(l status.Layer) int64 { return l.BytesFed }) > 0
				})
				if mode == "union" {
					rewriteAndRead(t, m.Dir, upper, "d11/f24")
				}
			})
		}
	}
}

// rewriteAndRead rewrites a lower file of a mount shorter than it was, and
// checks that the mount and the upper directory both hold the new bytes.
func rewriteAndRead(t *testing.T, mnt, upper, rel string) {
	t.Helper()
	data := []byte("rewritten after the scan")
	if err := os.WriteFile(filepath.Join(mnt, rel), data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{mnt, upper} {
		if got, err := os.ReadFile(filepath.Join(dir, rel)); err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s in %s after the rewrite: %q, %v; want %q", rel, dir, got, err, data)
		}
	}
}
