package bench

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// stderrKeep bounds how much of a failing command's stderr goes into its
// error: enough to name the failing path, not a page of find output.
const stderrKeep = 2048

// Time runs an external command to completion and returns its wall-clock
// time. The benchmark drives every file operation through a separate
// process (find, cat, dd, tar) so that the measuring process is never the
// one a FUSE server is serving, and so every system sees the same syscalls.
//
// The command runs in its own process group; when ctx ends the whole group
// (a shell pipeline included) gets SIGKILL. A non-zero exit is an error
// carrying the tail of the command's stderr.
func Time(ctx context.Context, name string, args ...string) (time.Duration, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	KillGroupOnCancel(cmd)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	elapsed := time.Since(start)
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return elapsed, fmt.Errorf("%s: %w%s", strings.Join(cmd.Args, " "), err, tail(stderr.Bytes()))
	}
	return elapsed, nil
}

// KillGroupOnCancel makes cmd (made with exec.CommandContext) run in its
// own process group, all of which gets SIGKILL when the context ends, and
// stops waiting for its output 5 s after that: a child stuck in a hung
// FUSE request may keep the pipes open.
func KillGroupOnCancel(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
}

// Shell times a bash script run with pipefail, so a failing find in
// `find | xargs cat` fails the measurement. Paths go in as positional
// parameters ($1, $2...) to keep quoting out of the script.
func Shell(ctx context.Context, script string, args ...string) (time.Duration, error) {
	argv := append([]string{"-o", "pipefail", "-c", script, "bash"}, args...)
	return Time(ctx, "bash", argv...)
}

func tail(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return ""
	}
	if len(b) > stderrKeep {
		b = append([]byte("..."), b[len(b)-stderrKeep:]...)
	}
	return ": " + string(b)
}
