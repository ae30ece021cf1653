package main

import (
	"context"
	"errors"
	"fmt"
	"github.com/stratafs/strata/bench"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

const (
	mountWait = 15 * time.Second // server start until the mount shows up
	exitWait  = 20 * time.Second // unmount until the server exits
)

// fuseServer is a union served by a FUSE daemon run in the foreground as
// our child, so its PID is known and it can be stopped and reaped.
type fuseServer struct {
	label  string
	fstype string // as /proc/self/mountinfo shows it
	argv   func(t *tree, d runDirs) []string
	// bySignal: the daemon unmounts itself on SIGTERM (strata's contract);
	// otherwise the benchmark unmounts and the daemon exits on its own.
	bySignal bool
}

func (s *fuseServer) name() string { return s.label }

func strataSystem(bin string) *fuseServer {
	return &fuseServer{
		label: "strata", fstype: "fuse.strata", bySignal: true,
		argv: func(t *tree, d runDirs) []string {
			return []string{bin, "mount", "--layer", t.layer0(), "--layer", t.layer1(), "--upper", d.upper, d.mnt}
		},
	}
}

func fuseOverlaySystem() *fuseServer {
	return &fuseServer{
		label: "fuse-overlayfs", fstype: "fuse.fuse-overlayfs",
		argv: func(t *tree, d runDirs) []string {
			return []string{"fuse-overlayfs", "-f", "-o", overlayOptions(t, d), d.mnt}
		},
	}
}

func (s *fuseServer) mount(ctx context.Context, t *tree, d runDirs, j *bench.Cleanups) (*mounted, error) {
	logPath := filepath.Join(d.base, "server.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	argv := s.argv(t, d)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: a Ctrl-C on the terminal reaches only the
	// benchmark, which then unmounts in order instead of racing the daemon.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", strings.Join(argv, " "), err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := j.Add(func() error { return s.stop(cmd.Process.Pid, d.mnt, exited, logPath) })
	if err := s.waitMounted(ctx, d.mnt, exited, logPath); err != nil {
		stop()
		return nil, fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
	}
	return &mounted{
		root: d.mnt, writeRoot: d.mnt,
		check: func() error { return s.alive(d.mnt, exited, logPath) },
		stop:  stop,
		abort: func() { forceUnmount(d.mnt) },
	}, nil
}

func (s *fuseServer) waitMounted(ctx context.Context, mnt string, exited chan error, logPath string) error {
	deadline := time.Now().Add(mountWait)
	for time.Now().Before(deadline) {
		if m, ok := findMount(mnt); ok && m.fstype == s.fstype {
			return nil
		}
		select {
		case err := <-exited:
			exited <- err // keep it for stop
			return fmt.Errorf("exited before mounting (%v)%s", err, logTail(logPath))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("no %s mount on %s after %v%s", s.fstype, mnt, mountWait, logTail(logPath))
}

// alive fails when the daemon has exited or the mount is gone.
func (s *fuseServer) alive(mnt string, exited chan error, logPath string) error {
	select {
	case err := <-exited:
		exited <- err
		return fmt.Errorf("%s server exited during the run (%v)%s", s.label, err, logTail(logPath))
	default:
	}
	return checkMounted(mnt, s.fstype)
}

// stop asks politely, then escalates: abort the FUSE connection, detach
// the mount and SIGKILL the daemon's process group. A daemon that needs
// the escalation, or exits non-zero, is reported as an error.
func (s *fuseServer) stop(pid int, mnt string, exited chan error, logPath string) error {
	var errs []error
	if s.bySignal {
		if _, ok := findMount(mnt); ok {
			syscall.Kill(pid, syscall.SIGTERM)
		}
	} else if err := unmount(mnt); err != nil {
		errs = append(errs, err)
	}
	select {
	case err := <-exited:
		if err != nil {
			errs = append(errs, fmt.Errorf("%s exited with %v after unmount%s", s.label, err, logTail(logPath)))
		}
	case <-time.After(exitWait):
		forceUnmount(mnt)
		syscall.Kill(-pid, syscall.SIGKILL)
		<-exited
		errs = append(errs, fmt.Errorf("%s (pid %d) did not exit within %v of unmount; killed it%s", s.label, pid, exitWait, logTail(logPath)))
	}
	if _, ok := findMount(mnt); ok {
		forceUnmount(mnt)
		errs = append(errs, fmt.Errorf("%s still mounted after %s exited; detached it", mnt, s.label))
	}
	return errors.Join(errs...)
}

// logTail quotes the end of a daemon's log for an error message.
func logTail(path string) string {
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
