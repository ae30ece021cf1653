package tests

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestMountRefusesBadInput: every bad argument gives one clear line on
// stderr, exit status 1, and no mount left behind.
func TestMountRefusesBadInput(t *testing.T) {
	t.Setenv("STRATA_RUNTIME_DIR", t.TempDir())
	base := t.TempDir()
	layer := mkdirs(t, base, "layer")
	mnt := mkdirs(t, base, "mnt")
	notEmpty := mkdirs(t, base, "full")
	putFile(t, filepath.Join(notEmpty, "x"), "x")
	file := filepath.Join(base, "file")
	putFile(t, file, "f")
	upper := mkdirs(t, base, "upper")
	roUpper := mkdirs(t, base, "ro")
	if err := unix.Mount("tmpfs", roUpper, "tmpfs", unix.MS_RDONLY, "size=1m"); err != nil {
		t.Fatalf("mount read-only tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(roUpper, 0) })

	tests := []struct {
		name string
		args []string
		want string // in the error line
	}{
		{"missing layer", []string{"mount", "--layer", base + "/nope", mnt}, "no such file"},
		{"layer is a file", []string{"mount", "--layer", file, mnt}, "not a directory"},
		{"no layer", []string{"mount", mnt}, "layer"},
		{"missing mountpoint", []string{"mount", "--layer", layer, base + "/nomnt"}, "no such file"},
		{"mountpoint not empty", []string{"mount", "--layer", layer, notEmpty}, "not empty"},
		{"mountpoint is a file", []string{"mount", "--layer", layer, file}, "not a directory"},
		{"two mountpoints", []string{"mount", "--layer", layer, mnt, mnt}, "exactly one"},
		{"missing upper", []string{"mount", "--layer", layer, "--upper", base + "/noup", mnt}, "no such file"},
		{"upper is a file", []string{"mount", "--layer", layer, "--upper", file, mnt}, "not a directory"},
		{"read-only upper", []string{"mount", "--layer", layer, "--upper", roUpper, mnt}, "read-only"},
		{"umount of a non-mount", []string{"umount", mnt}, "umount"},
		{"workdir without --kernel-overlay", []string{"mount", "--layer", layer, "--upper", upper, "--workdir", base + "/w", mnt}, "--workdir"},
		{"workdir inside the upper", []string{"mount", "--layer", layer, "--kernel-overlay", "--upper", upper, "--workdir", upper + "/w", mnt}, "work directory"},
		{"kernel overlay on a read-only upper", []string{"mount", "--layer", layer, "--kernel-overlay", "--upper", roUpper, mnt}, "read-only"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(strataBin, tc.args...)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			done := make(chan error, 1)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			go func() { done <- cmd.Wait() }()
			var err error
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				unix.Unmount(mnt, unix.MNT_DETACH)
				t.Fatalf("strata %v did not exit: it mounted or hung", tc.args)
			}
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Errorf("exit: %v, want status 1", err)
			}
			msg := strings.TrimSpace(stderr.String())
			if strings.Count(msg, "\n") != 0 || !strings.HasPrefix(msg, "strata: ") {
				t.Errorf("stderr %q: want one line starting with 'strata: '", msg)
			}
			if !strings.Contains(strings.ToLower(msg), tc.want) {
				t.Errorf("stderr %q does not say %q", msg, tc.want)
			}
			if isMounted(mnt) {
				unix.Unmount(mnt, unix.MNT_DETACH)
				t.Error("a mount was left behind")
			}
			checkNoImageMounts(t)
		})
	}
}

// TestSignalUnmounts: SIGTERM and SIGINT unmount cleanly and exit 0, with
// an upper write durable afterwards.
func TestSignalUnmounts(t *testing.T) {
	for _, tc := range []struct {
		sig   syscall.Signal
		extra []string
	}{{syscall.SIGTERM, nil}, {syscall.SIGINT, nil}, {syscall.SIGTERM, []string{"--kernel-overlay"}}} {
		sig := tc.sig
		t.Run(strings.Join(append([]string{sig.String()}, tc.extra...), ""), func(t *testing.T) {
			t.Setenv("STRATA_RUNTIME_DIR", t.TempDir())
			base := t.TempDir()
			layer := mkdirs(t, base, "layer")
			putFile(t, filepath.Join(layer, "f"), "lower")
			upper := mkdirs(t, base, "upper")
			m := mountStrata(t, []string{layer}, upper, tc.extra...)
			putFile(t, filepath.Join(m.Dir, "f"), "changed")
			cmd := m.cmd
			m.cmd = nil // this test stops the mount itself
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-m.done:
				if err != nil {
					t.Errorf("strata exited with %v after %v: %s", err, sig, m.stderr.String())
				}
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				t.Fatalf("strata did not exit after %v", sig)
			}
			if isMounted(m.Dir) {
				unix.Unmount(m.Dir, unix.MNT_DETACH)
				t.Fatalf("still mounted after %v", sig)
			}
			if got, _ := os.ReadFile(filepath.Join(upper, "f")); string(got) != "changed" {
				t.Errorf("upper f = %q after %v, want %q", got, sig, "changed")
			}
			checkNoImageMounts(t)
		})
	}
}

func mkdirs(t *testing.T, base, name string) string {
	t.Helper()
	p := filepath.Join(base, name)
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func putFile(t *testing.T, p, data string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
