package unionfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNotMounted is returned when a directory that should be a mount point
// is not one.
var ErrNotMounted = errors.New("not a mount point")

// overlayOptions keep the upper directory in the format strata's own union
// reads and writes, so one upper can be used by either: redirect_dir=off
// makes a rename of a lower directory fail with EXDEV (mv then copies),
// index=off and metacopy=off write nothing but plain copies. xino=on gives
// every file one inode number whichever layer it is in (readdir's d_ino
// equals st_ino, hard links share one); it changes nothing on disk, and it
// must be asked for: overlayfs turns it off by default for a lower
// filesystem with no UUID, as a FUSE mount is.
const overlayOptions = "redirect_dir=off,index=off,metacopy=off,xino=on"

// MountOverlay mounts kernel overlayfs on target with lower (a read-only
// strata mount, best an open-less one: WithOpenless) as its only lower
// layer, and upper and work as its upper and work directories. Every write
// and every read of bytes already local then runs in the kernel alone; a
// read of a lower file still reaches strata once per page the kernel does
// not cache. work must be an empty directory on upper's filesystem, outside
// upper; it is made if missing.
func MountOverlay(lower, upper, work, target string) error {
	for _, p := range []string{lower, upper, work, target} {
		if strings.ContainsAny(p, ",:\\\n") {
			return fmt.Errorf("overlay: path %q: overlayfs cannot take a path with ',', ':' or '\\'", p)
		}
	}
	absUp, err := filepath.Abs(upper)
	if err != nil {
		return err
	}
	absWork, err := filepath.Abs(work)
	if err != nil {
		return err
	}
	if absWork == absUp || strings.HasPrefix(absWork, absUp+"/") || strings.HasPrefix(absUp, absWork+"/") {
		return fmt.Errorf("overlay: work directory %s: must be outside the upper directory %s and not hold it", work, upper)
	}
	if err := unix.Access(upper, unix.W_OK); err != nil {
		return fmt.Errorf("overlay: upper directory %s: %w", upper, err)
	}
	if err := os.MkdirAll(work, 0o700); err != nil {
		return fmt.Errorf("overlay: work directory: %w", err)
	}
	var su, sw unix.Stat_t
	if err := unix.Stat(upper, &su); err != nil {
		return fmt.Errorf("overlay: upper directory: %w", err)
	}
	if err := unix.Stat(work, &sw); err != nil {
		return fmt.Errorf("overlay: work directory: %w", err)
	}
	if su.Dev != sw.Dev {
		return fmt.Errorf("overlay: work directory %s: must be on the upper directory's filesystem", work)
	}
	absLow, err := filepath.Abs(lower)
	if err != nil {
		return err
	}
	data := "lowerdir=" + absLow + ",upperdir=" + absUp + ",workdir=" + absWork + "," + overlayOptions
	if err := unix.Mount("overlay", target, "overlay", 0, data); err != nil {
		return fmt.Errorf("overlay on %s: %w (the kernel's reason is in dmesg)", target, err)
	}
	return nil
}

// OverlaysOn counts the overlayfs mounts in this mount namespace that
// have lower (an absolute path) as a lower layer.
func OverlaysOn(lower string) (int, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [TAGS...] - FSTYPE SOURCE SUPEROPTS
		_, after, ok := strings.Cut(line, " - ")
		f := strings.Fields(after)
		if !ok || len(f) < 3 || f[0] != "overlay" {
			continue
		}
		for _, opt := range strings.Split(f[2], ",") {
			dirs, ok := strings.CutPrefix(opt, "lowerdir=")
			if ok && slices.Contains(strings.Split(dirs, ":"), lower) {
				n++
			}
		}
	}
	return n, nil
}

// OverlayLower returns the top lower directory of the overlayfs mounted
// on mountpoint (an absolute path), or "" if no overlayfs is mounted
// there. A container's root on strata's snapshotter is such an overlay, and
// its top lower directory is the image's merged mount.
func OverlayLower(mountpoint string) (string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	top := ""
	for line := range strings.SplitSeq(string(b), "\n") {
		before, after, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(before), strings.Fields(after)
		if !ok || len(f) < 5 || len(g) < 3 || g[0] != "overlay" || unescapeMountinfo(f[4]) != mountpoint {
			continue
		}
		top = "" // the last mount on mountpoint is the one seen there
		for _, opt := range strings.Split(g[2], ",") {
			if dirs, ok := strings.CutPrefix(opt, "lowerdir="); ok {
				top = unescapeMountinfo(strings.Split(dirs, ":")[0])
			}
		}
	}
	return top, nil
}

// MountsUnder lists the mount points below dir (not dir itself) in this
// mount namespace, in mount order: a mount on top of another comes after
// it.
func MountsUnder(dir string) ([]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []string
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		p := unescapeMountinfo(f[4])
		if strings.HasPrefix(p, dir+"/") {
			out = append(out, p)
		}
	}
	return out, nil
}

// unescapeMountinfo undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// IsMountpoint reports whether dir is the root of a mount: its device
// differs from its parent's. (A bind mount of a directory onto another of
// the same filesystem escapes this test; strata's own mounts do not.)
func IsMountpoint(dir string) (bool, error) {
	var st, parent unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return false, err
	}
	if err := unix.Stat(filepath.Join(dir, ".."), &parent); err != nil {
		return false, err
	}
	return st.Dev != parent.Dev || st.Ino == parent.Ino, nil
}

// WaitUnmounted returns nil once dir is no longer a mount point, however it
// was unmounted, or ctx's error when ctx ends first.
func WaitUnmounted(ctx context.Context, dir string) error {
	w, err := WatchMounts()
	if err != nil {
		return err
	}
	defer w.Close()
	for {
		mounted, err := IsMountpoint(dir)
		switch {
		case errors.Is(err, unix.ENOTCONN):
			mounted = true // a FUSE mount whose server died is still mounted
		case err != nil:
			return err
		}
		if !mounted {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := w.Wait(time.Second); err != nil {
			return err
		}
	}
}

// MountWatch tells of changes to this process's mount table: it sleeps
// on the table's change notification (poll on /proc/self/mountinfo).
//
// The file is a raw descriptor, not an *os.File: Go registers the files it
// opens with its own epoll, and an epoll that polls the file takes the
// change notification for itself (the kernel reports a change to the first
// poller that looks, per open file), so the watcher's own poll missed
// about half of the changes and slept out its whole timeout.
type MountWatch struct {
	fd  int
	buf []byte
}

// WatchMounts starts watching; Close ends it.
func WatchMounts() (*MountWatch, error) {
	fd, err := unix.Open("/proc/self/mountinfo", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: "/proc/self/mountinfo", Err: err}
	}
	w := &MountWatch{fd: fd, buf: make([]byte, 64<<10)}
	w.drain()
	return w, nil
}

// drain reads the table to its end, which re-arms the notification.
func (w *MountWatch) drain() {
	if _, err := unix.Seek(w.fd, 0, 0); err != nil {
		return
	}
	for {
		if n, err := unix.Read(w.fd, w.buf); n <= 0 || err != nil {
			return
		}
	}
}

// Wait returns after the mount table changed since the last Wait (or
// WatchMounts), or after timeout, whichever is first.
func (w *MountWatch) Wait(timeout time.Duration) error {
	fds := []unix.PollFd{{Fd: int32(w.fd), Events: unix.POLLPRI | unix.POLLERR}}
	if _, err := unix.Poll(fds, int(timeout/time.Millisecond)); err != nil && !errors.Is(err, unix.EINTR) {
		return err
	}
	w.drain()
	return nil
}

// Close stops watching.
func (w *MountWatch) Close() error { return unix.Close(w.fd) }
