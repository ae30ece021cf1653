package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// pythonCmd is what every system runs in a chroot of its mount.
var pythonCmd = []string{"/usr/bin/python3", "-c", "print(1)"}

// dropCaches empties the page, dentry and inode caches so each run starts
// with nothing of the image in memory (the registry's blobs aside).
func dropCaches() error {
	if err := exec.Command("sync").Run(); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o200)
}

// firstOutput runs pythonCmd chrooted in mnt and returns when its first
// line arrives; it then waits for the process to exit, untimed. start is
// when the system's run began.
func firstOutput(ctx context.Context, mnt string, start time.Time) (time.Duration, error) {
	args := append([]string{mnt}, pythonCmd...)
	cmd := exec.CommandContext(ctx, "chroot", args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/root", "LANG=C.UTF-8", "PYTHONDONTWRITEBYTECODE=1"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	line, rerr := bufio.NewReader(out).ReadString('\n')
	elapsed := time.Since(start)
	werr := cmd.Wait()
	switch {
	case werr != nil:
		return 0, fmt.Errorf("chroot %s: %w: %s", strings.Join(pythonCmd, " "), werr, strings.TrimSpace(stderr.String()))
	case rerr != nil || line != "1\n":
		return 0, fmt.Errorf("chroot python3 printed %q (%v), want \"1\"", line, rerr)
	}
	return elapsed, nil
}

// readEverything reads every regular file under mnt whole, in directory
// order, one at a time, as a build or a scan of the image would, and
// returns the bytes read.
func readEverything(ctx context.Context, mnt string) (int64, error) {
	buf := make([]byte, 1<<20)
	var total int64
	err := filepath.WalkDir(mnt, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, buf)
		total += n
		return err
	})
	return total, err
}

// fsType returns the file system type of the topmost mount on dir, "" if
// none. Reading mountinfo, unlike a stat of dir, cannot hang on a FUSE
// server that stopped answering.
func fsType(dir string) string {
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

// unmount tries a clean unmount for a few seconds (EBUSY can linger just
// after the last reader exits), then aborts a FUSE connection and detaches.
func unmount(dir string) error {
	var err error
	for range 20 {
		if fsType(dir) == "" {
			return nil
		}
		if err = unmountWithin(dir, 0, 5*time.Second); err == nil {
			return nil
		}
		time.Sleep(250 * time.Millisecond)
	}
	if unmountWithin(dir, syscall.MNT_FORCE, 5*time.Second) != nil && fsType(dir) != "" {
		unmountWithin(dir, syscall.MNT_DETACH, 5*time.Second)
	}
	return fmt.Errorf("unmount %s: %w; aborted and detached it", dir, err)
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
