package images

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// chrootEnv is the whole environment of a command run in the rootfs: the
// builder's own (proxies, locale, GOFLAGS) must not leak into the image.
var chrootEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=/root",
	"LC_ALL=C",
	"DEBIAN_FRONTEND=noninteractive",
	"DEBCONF_NONINTERACTIVE_SEEN=true",
}

// policyRC is Debian's hook that invoke-rc.d asks before starting a
// service: exit 101 means "not allowed", so package installs in the
// chroot start no daemon.
const policyRC = "#!/bin/sh\nexit 101\n"

// mountScript runs in a private mount namespace (unshare -m): every mount
// it makes disappears with the namespace when its last process exits, so
// a failed or killed step leaves nothing mounted on the host. $1 is the
// rootfs, $2 the script to run in it.
const mountScript = `set -eu
root=$1
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$root/sys"
mount --bind /etc/resolv.conf "$root/etc/resolv.conf"
mount -o remount,bind,ro "$root/etc/resolv.conf"
exec chroot "$root" /bin/sh -eu -c "$2"
`

// inChroot runs script with /bin/sh inside the rootfs, with /proc, /sys
// and the host's resolv.conf (read-only, for the apt mirror) mounted for
// the duration, and policy-rc.d in place. Output goes to logPath.
func inChroot(ctx context.Context, root, script, logPath string) error {
	rc := filepath.Join(root, "usr/sbin/policy-rc.d")
	if err := os.WriteFile(rc, []byte(policyRC), 0o755); err != nil {
		return err
	}
	defer os.Remove(rc)
	if err := checkMountPoints(root); err != nil {
		return err
	}
	err := run(ctx, logPath, chrootEnv, "unshare", "--mount", "--propagation", "private",
		"sh", "-c", mountScript, "sh", root, script)
	if kerr := killInRoot(root); err == nil {
		err = kerr
	}
	return err
}

// checkMountPoints makes sure the mount points are what they should be: a
// symlink there would make mount follow it out of the rootfs.
func checkMountPoints(root string) error {
	for p, dir := range map[string]bool{"proc": true, "sys": true, "etc/resolv.conf": false} {
		fi, err := os.Lstat(filepath.Join(root, p))
		if err != nil {
			return fmt.Errorf("%w: mount point: %v", ErrBuild, err)
		}
		if fi.IsDir() != dir || fi.Mode()&os.ModeSymlink != 0 {
			return fmt.Errorf("%w: mount point %s has mode %v", ErrBuild, p, fi.Mode())
		}
	}
	return nil
}

// run starts a command in its own process group, output to logPath (the
// tail goes into the error). ctx kills the whole group.
func run(ctx context.Context, logPath string, env []string, name string, args ...string) error {
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "+ %s %s\n", name, strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w (log %s)%s", name, err, logPath, logTail(logPath))
	}
	return nil
}

// logTail returns the last lines of a log for an error message.
func logTail(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return ":\n\t" + strings.Join(lines, "\n\t")
}

// killInRoot kills, by PID, any process still running with the rootfs as
// its root: a daemon a package started despite policy-rc.d. Only the
// step's own descendants can have that root.
func killInRoot(root string) error {
	if r, err := filepath.EvalSymlinks(root); err == nil {
		root = r // /proc/PID/root shows the resolved path
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return err
	}
	var killed []string
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if r, err := os.Readlink(filepath.Join("/proc", e.Name(), "root")); err == nil && r == root {
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				killed = append(killed, e.Name())
			}
		}
	}
	if len(killed) > 0 {
		return fmt.Errorf("%w: processes %s were still running in %s (killed)", ErrBuild, strings.Join(killed, ","), root)
	}
	return nil
}

// hostOutput runs a command on the host and returns its stdout.
func hostOutput(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}
