package peers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// service is a daemon of ours that serves a unix socket rather than a
// mount (containerd, containerd-stargz-grpc): started as our child in its
// own process group, ready once its socket accepts a connection, stopped
// with its documented signal and then by escalation. It dies with us
// (Pdeathsig), so a killed benchmark leaves no daemon behind.
type service struct {
	label   string
	sock    string
	log     string
	stopSig syscall.Signal
	cmd     *exec.Cmd
	exited  chan error // receives Wait's result once; put back after reading
}

// startService runs argv with its output in log and waits until sock
// accepts connections. On failure the caller still calls stop.
func startService(ctx context.Context, label string, argv []string, sock, log string, stopSig syscall.Signal) (*service, error) {
	s := &service{label: label, sock: sock, log: log, stopSig: stopSig}
	logf, err := os.Create(log)
	if err != nil {
		return s, err
	}
	defer logf.Close()
	s.cmd = exec.Command(argv[0], argv[1:]...)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		s.cmd = nil
		return s, fmt.Errorf("start %s: %w", strings.Join(argv, " "), err)
	}
	s.exited = make(chan error, 1)
	go func() { s.exited <- s.cmd.Wait() }()
	return s, s.waitReady(ctx)
}

func (s *service) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(DefaultMountWait)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("unix", s.sock, time.Second); err == nil {
			c.Close()
			return nil
		}
		select {
		case err := <-s.exited:
			s.exited <- err
			return fmt.Errorf("%s exited before serving %s (%v)%s", s.label, s.sock, err, LogTail(s.log))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s: no answer on %s after %v%s", s.label, s.sock, DefaultMountWait, LogTail(s.log))
}

func (s *service) pid() int {
	if s == nil || s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// stop sends the service its stop signal and waits for it to exit; one
// that does not within exitWait gets SIGKILL (its whole process group),
// which is reported. An exit status other than success after the signal
// is not an error: daemons exit non-zero on a signal.
func (s *service) stop() error {
	if s == nil || s.cmd == nil {
		return nil
	}
	syscall.Kill(s.pid(), s.stopSig)
	select {
	case err := <-s.exited:
		s.exited <- err
		return nil
	case <-time.After(exitWait):
		syscall.Kill(-s.pid(), syscall.SIGKILL)
		err := <-s.exited
		s.exited <- err
		return fmt.Errorf("%s (pid %d) did not exit within %v of %v; killed it%s", s.label, s.pid(), exitWait, s.stopSig, LogTail(s.log))
	}
}

// alive fails when the service has exited; a nil service (a node with
// no proxy daemon) is never dead.
func (s *service) alive() error {
	if s == nil || s.exited == nil {
		return nil
	}
	select {
	case err := <-s.exited:
		s.exited <- err
		return fmt.Errorf("%s exited during the run (%v)%s", s.label, err, LogTail(s.log))
	default:
		return nil
	}
}

// killNaming SIGKILLs every process whose command line contains s (the
// runc shims of one containerd, which name its socket) and returns their
// PIDs. Only processes of ours carry the private paths it is given.
func killNaming(s string) []int {
	var killed []int
	for _, pid := range pidsNaming(s) {
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			killed = append(killed, pid)
		}
	}
	return killed
}

// pidsNaming lists the processes, other than this one, whose command line
// contains s.
func pidsNaming(s string) []int {
	procs, _ := os.ReadDir("/proc")
	var pids []int
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile("/proc/" + p.Name() + "/cmdline")
		if err != nil || !strings.Contains(string(b), s) {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

var errLeftover = errors.New("left running")
