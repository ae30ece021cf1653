package tests

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// strataBin is the strata binary built once for the whole package.
var strataBin string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "tests: must run as root: they mount FUSE and kernel overlayfs for real")
		return 1
	}
	dir, err := os.MkdirTemp("", "strata-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "tests:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	strataBin = filepath.Join(dir, "strata")
	build := exec.Command("go", "build", "-o", strataBin, "../cmd/strata")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "tests: building strata:", err)
		return 1
	}
	return m.Run()
}

// strataMount is one running `strata mount` process.
type strataMount struct {
	Dir    string
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// mountStrata mounts layers (lowest first) with an optional upper ("" for a
// read-only mount) on a fresh directory and returns the mount. The mount is
// undone in t.Cleanup, which also fails the test if strata did not exit
// cleanly or logged a panic.
func mountStrata(t testing.TB, layers []string, upper string, extra ...string) *strataMount {
	t.Helper()
	mnt := t.TempDir()
	args := []string{"mount"}
	for _, l := range layers {
		args = append(args, "--layer", l)
	}
	if upper != "" {
		args = append(args, "--upper", upper)
	}
	args = append(args, extra...)
	args = append(args, mnt)
	m := &strataMount{Dir: mnt, stderr: &syncBuffer{}, done: make(chan error, 1)}
	m.cmd = exec.Command(strataBin, args...)
	m.cmd.Stderr = m.stderr
	m.cmd.Stdout = m.stderr
	if err := m.cmd.Start(); err != nil {
		t.Fatalf("start strata: %v", err)
	}
	go func() { m.done <- m.cmd.Wait() }()
	deadline := time.Now().Add(20 * time.Second)
	for !isMounted(mnt) {
		select {
		case err := <-m.done:
			t.Fatalf("strata mount exited before mounting (%v): %s", err, m.stderr.String())
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			m.cmd.Process.Kill()
			t.Fatalf("strata did not mount %s within 20s: %s", mnt, m.stderr.String())
		}
	}
	t.Cleanup(func() { m.unmount(t) })
	return m
}

// unmount stops the mount the way a user would (strata umount) and checks
// that the server exited with status 0 and logged no panic.
func (m *strataMount) unmount(t testing.TB) {
	t.Helper()
	if m.cmd == nil {
		return
	}
	cmd := m.cmd
	m.cmd = nil
	if isMounted(m.Dir) {
		// A mount can be busy for a moment after a test that did not
		// keep anything open in it (CI saw it once, right after a test of
		// statfs): EBUSY is retried for up to 2 s, and said in the log.
		for try := 0; ; try++ {
			out, err := exec.Command(strataBin, "umount", m.Dir).CombinedOutput()
			if err == nil {
				if try > 0 {
					t.Logf("strata umount %s: busy %d times before it unmounted", m.Dir, try)
				}
				break
			}
			if try < 20 && strings.Contains(string(out), "busy") {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			t.Errorf("strata umount %s: %v: %s", m.Dir, err, out)
			unix.Unmount(m.Dir, unix.MNT_DETACH)
			break
		}
	}
	select {
	case err := <-m.done:
		if err != nil {
			t.Errorf("strata exited with %v: %s", err, m.stderr.String())
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Errorf("strata did not exit after unmount: %s", m.stderr.String())
	}
	if s := m.stderr.String(); strings.Contains(s, "panic") {
		t.Errorf("strata panicked: %s", s)
	}
}

// mountOverlay mounts kernel overlayfs with lower dirs given lowest first
// (as for strata), an upper and a work dir; upper == "" mounts read-only.
// Options are pinned so that the oracle does not depend on kernel defaults.
func mountOverlay(t testing.TB, layers []string, upper string) string {
	t.Helper()
	mnt := t.TempDir()
	lowers := make([]string, len(layers))
	for i, l := range layers {
		lowers[len(layers)-1-i] = l
	}
	opts := "lowerdir=" + strings.Join(lowers, ":") + ",redirect_dir=off,index=off,metacopy=off,xino=off"
	if upper != "" {
		work := filepath.Join(filepath.Dir(upper), filepath.Base(upper)+".work")
		if err := os.MkdirAll(work, 0o755); err != nil {
			t.Fatal(err)
		}
		opts += ",upperdir=" + upper + ",workdir=" + work
	}
	if len(layers) == 1 && upper == "" {
		// overlayfs needs two lowers when it has no upper.
		empty := t.TempDir()
		opts = strings.Replace(opts, "lowerdir="+layers[0], "lowerdir="+layers[0]+":"+empty, 1)
	}
	if err := unix.Mount("overlay", mnt, "overlay", 0, opts); err != nil {
		t.Fatalf("mount overlay (%s): %v", opts, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, 0); err != nil {
			t.Errorf("unmount overlay %s: %v", mnt, err)
			unix.Unmount(mnt, unix.MNT_DETACH)
		}
	})
	return mnt
}

// isMounted reports whether dir is a mount point (in this mount namespace).
func isMounted(dir string) bool {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && unescapeMountPath(fields[4]) == dir {
			return true
		}
	}
	return false
}

func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &v); err == nil {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
