package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"
)

// mountEntry is the part of a /proc/self/mountinfo line the benchmark uses.
type mountEntry struct {
	fstype string
}

// findMount returns the topmost mount on dir. Reading mountinfo, unlike a
// stat of dir, cannot hang on a FUSE server that stopped answering.
func findMount(dir string) (mountEntry, bool) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return mountEntry{}, false
	}
	defer f.Close()
	var found mountEntry
	ok := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pre, post, _ := strings.Cut(sc.Text(), " - ")
		fields, tail := strings.Fields(pre), strings.Fields(post)
		if len(fields) >= 5 && len(tail) >= 1 && fields[4] == dir {
			found, ok = mountEntry{fstype: tail[0]}, true
		}
	}
	return found, ok
}

// checkMounted fails when dir no longer carries a mount of type fstype.
func checkMounted(dir, fstype string) error {
	m, ok := findMount(dir)
	if !ok || m.fstype != fstype {
		return fmt.Errorf("%s is no longer mounted (%s)", dir, fstype)
	}
	return nil
}

// unmount tries a clean unmount for a few seconds (EBUSY can linger just
// after the last reader exits), then aborts a FUSE connection and detaches.
// A lazy unmount is reported as an error: something still held the mount.
func unmount(dir string) error {
	var err error
	for range 20 {
		if _, ok := findMount(dir); !ok {
			return nil
		}
		if err = unmountWithin(dir, 0, 5*time.Second); err == nil {
			return nil
		}
		time.Sleep(250 * time.Millisecond)
	}
	forceUnmount(dir)
	return fmt.Errorf("unmount %s: %w; aborted and detached it", dir, err)
}

// forceUnmount is the last resort for a mount whose server hangs.
// MNT_FORCE on a FUSE mount aborts the connection (the kernel's
// umount_begin), failing every pending request with ECONNABORTED, so
// clients stuck in one can exit; the detach then removes the mount even
// if the server still holds /dev/fuse. (/sys/fs/fuse/connections/N/abort
// does the same, but fusectl is not mounted on these machines.)
func forceUnmount(dir string) {
	if unmountWithin(dir, syscall.MNT_FORCE, 5*time.Second) == nil {
		return
	}
	if _, ok := findMount(dir); ok {
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
