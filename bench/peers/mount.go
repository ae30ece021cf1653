package peers

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// ErrNotMounted: a mount the caller relies on is gone.
var ErrNotMounted = errors.New("not mounted")

// FsType returns the file system type of the topmost mount on dir ("" if
// none), as /proc/self/mountinfo shows it ("overlay", "fuse.strata").
func FsType(dir string) string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	found := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pre, post, _ := strings.Cut(sc.Text(), " - ")
		fields, tail := strings.Fields(pre), strings.Fields(post)
		if len(fields) >= 5 && len(tail) >= 1 && fields[4] == dir {
			found = tail[0]
		}
	}
	return found
}

// MountsUnder lists the mount points at or below dir, for checks that a
// benchmark left nothing mounted.
func MountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 5 && (fields[4] == dir || strings.HasPrefix(fields[4], strings.TrimSuffix(dir, "/")+"/")) {
			out = append(out, fields[4])
		}
	}
	return out
}

// CheckMounted fails (ErrNotMounted) when dir no longer carries a mount of
// type fstype.
func CheckMounted(dir, fstype string) error {
	if got := FsType(dir); got != fstype {
		return fmt.Errorf("%s: %w (want %s, mountinfo shows %q)", dir, ErrNotMounted, fstype, got)
	}
	return nil
}

// Unmount tries a clean unmount for a few seconds (EBUSY can linger just
// after the last reader exits), then force-unmounts. Needing the force is
// reported as an error: something still held the mount.
func Unmount(dir string) error {
	var err error
	for range 20 {
		if FsType(dir) == "" {
			return nil
		}
		if err = unmountWithin(dir, 0, 5*time.Second); err == nil {
			return nil
		}
		time.Sleep(250 * time.Millisecond)
	}
	ForceUnmount(dir)
	return fmt.Errorf("unmount %s: %w; aborted and detached it", dir, err)
}

// ForceUnmount is the last resort for a mount whose server hangs: MNT_FORCE
// aborts a FUSE connection, then MNT_DETACH removes the mount. (fusectl's
// abort file would do the same, but fusectl is not mounted here.)
func ForceUnmount(dir string) {
	if unmountWithin(dir, syscall.MNT_FORCE, 5*time.Second) == nil {
		return
	}
	if FsType(dir) != "" {
		unmountWithin(dir, syscall.MNT_DETACH, 5*time.Second)
	}
}

// unmountWithin bounds umount(2), which can block on a wedged FUSE server.
func unmountWithin(dir string, flags int, d time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- syscall.Unmount(dir, flags) }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		return errors.New("umount timed out")
	}
}

// DropCaches syncs and empties the page, dentry and inode caches of every
// file system, so the next pass starts with nothing in memory.
func DropCaches() error {
	if err := exec.Command("sync").Run(); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o200)
}
