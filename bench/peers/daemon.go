package peers

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// How long a daemon gets at each step of its life.
const (
	DefaultMountWait = 60 * time.Second // start until the mount shows (a TOC over a slow link included)
	exitWait         = 20 * time.Second // asked to stop until it exits
)

// Daemon is a FUSE server run in the foreground as our child. Fill the
// exported fields, then Start; Stop (once Start was called) always.
type Daemon struct {
	Label  string   // for messages: "strata", "fuse-overlayfs"
	Argv   []string // the server's command line; it must stay in the foreground
	Mnt    string   // its mount point
	FSType string   // as mountinfo shows it: "fuse.strata"
	Log    string   // file for its stdout and stderr
	// StopArgv, if set, is the command that asks it to unmount and exit
	// (`strata umount MNT`); else StopSignal sends SIGTERM; else the mount
	// is unmounted with umount(2) and the daemon exits on its own.
	StopArgv   []string
	StopSignal bool
	// MountWait bounds Start's wait for the mount; default DefaultMountWait.
	MountWait time.Duration

	cmd    *exec.Cmd
	exited chan error // receives Wait's result once; put back after reading
}

// PID is the daemon's process id (0 before Start).
func (d *Daemon) PID() int {
	if d.cmd == nil || d.cmd.Process == nil {
		return 0
	}
	return d.cmd.Process.Pid
}

// Start runs the daemon and returns once its mount shows in mountinfo. On
// failure the caller still calls Stop, which reaps whatever was started.
func (d *Daemon) Start(ctx context.Context) error {
	logf, err := os.Create(d.Log)
	if err != nil {
		return err
	}
	defer logf.Close()
	d.cmd = exec.Command(d.Argv[0], d.Argv[1:]...)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	// Its own process group: a Ctrl-C on the terminal reaches only the
	// benchmark, which then unmounts in order instead of racing the daemon.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		d.cmd = nil
		return fmt.Errorf("start %s: %w", strings.Join(d.Argv, " "), err)
	}
	d.exited = make(chan error, 1)
	go func() { d.exited <- d.cmd.Wait() }()
	if err := d.waitMounted(ctx); err != nil {
		return fmt.Errorf("%s: %w", strings.Join(d.Argv, " "), err)
	}
	return nil
}

func (d *Daemon) waitMounted(ctx context.Context) error {
	wait := d.MountWait
	if wait == 0 {
		wait = DefaultMountWait
	}
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		if FsType(d.Mnt) == d.FSType {
			return nil
		}
		select {
		case err := <-d.exited:
			d.exited <- err // keep it for Stop
			return fmt.Errorf("exited before mounting (%v)%s", err, LogTail(d.Log))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
	return fmt.Errorf("no %s mount on %s after %v%s", d.FSType, d.Mnt, wait, LogTail(d.Log))
}

// Alive fails when the daemon has exited or its mount is gone.
func (d *Daemon) Alive() error {
	select {
	case err := <-d.exited:
		d.exited <- err
		return fmt.Errorf("%s exited during the run (%v)%s", d.Label, err, LogTail(d.Log))
	default:
	}
	return CheckMounted(d.Mnt, d.FSType)
}

// Stop asks the daemon to go its documented way, then escalates: force
// unmount and SIGKILL of its process group. A daemon that needed the
// escalation, or exited non-zero, is reported as an error.
func (d *Daemon) Stop() error {
	if d.cmd == nil {
		return nil
	}
	var errs []error
	if FsType(d.Mnt) != "" {
		errs = append(errs, d.askToStop())
	}
	select {
	case err := <-d.exited:
		d.exited <- err
		if err != nil {
			errs = append(errs, fmt.Errorf("%s exited with %v%s", d.Label, err, LogTail(d.Log)))
		}
	case <-time.After(exitWait):
		ForceUnmount(d.Mnt)
		syscall.Kill(-d.PID(), syscall.SIGKILL)
		err := <-d.exited
		d.exited <- err
		errs = append(errs, fmt.Errorf("%s (pid %d) did not exit within %v of being asked; killed it%s", d.Label, d.PID(), exitWait, LogTail(d.Log)))
	}
	if FsType(d.Mnt) != "" {
		ForceUnmount(d.Mnt)
		errs = append(errs, fmt.Errorf("%s still mounted after %s exited; detached it", d.Mnt, d.Label))
	}
	return errors.Join(errs...)
}

func (d *Daemon) askToStop() error {
	switch {
	case d.StopArgv != nil:
		if out, err := exec.Command(d.StopArgv[0], d.StopArgv[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v: %s", strings.Join(d.StopArgv, " "), err, strings.TrimSpace(string(out)))
		}
	case d.StopSignal:
		syscall.Kill(d.PID(), syscall.SIGTERM)
	default:
		return Unmount(d.Mnt)
	}
	return nil
}

// Abort breaks a hung mount so its stuck clients die.
func (d *Daemon) Abort() { ForceUnmount(d.Mnt) }

// LogTail quotes the end of a daemon's log for an error message.
func LogTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(strings.TrimSpace(string(b))) == 0 {
		return ""
	}
	s := strings.TrimSpace(string(b))
	if len(s) > 1500 {
		s = "..." + s[len(s)-1500:]
	}
	return "; log: " + s
}
