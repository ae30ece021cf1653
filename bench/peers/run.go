package peers

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/stratafs/strata/bench"
)

// PythonPrint is the smallest useful container command: start the
// interpreter, print one line.
var PythonPrint = []string{"/usr/bin/python3", "-c", "print(1)"}

// FirstOutput runs argv chrooted in root and returns the time from start
// (when the system's run began) to its first line of output; it then waits
// for the process to exit, untimed, and fails if the process failed or its
// first line does not start with want ("1\n" for PythonPrint).
func FirstOutput(ctx context.Context, root string, start time.Time, want string, argv ...string) (time.Duration, error) {
	cmd := exec.CommandContext(ctx, "chroot", append([]string{root}, argv...)...)
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/root", "LANG=C.UTF-8", "PYTHONDONTWRITEBYTECODE=1"}
	return firstLine(ctx, cmd, start, want)
}

// firstLine runs cmd (made with ctx), returns the time from start to its
// first line of output, then waits for it, untimed; it fails if cmd
// failed or its first line does not start with want.
func firstLine(ctx context.Context, cmd *exec.Cmd, start time.Time, want string) (time.Duration, error) {
	bench.KillGroupOnCancel(cmd)
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
	io.Copy(io.Discard, out)
	werr := cmd.Wait()
	switch {
	case werr != nil:
		return 0, fmt.Errorf("%s: %w: %s", strings.Join(cmd.Args, " "), werr, strings.TrimSpace(stderr.String()))
	case rerr != nil || !strings.HasPrefix(line, want):
		return 0, fmt.Errorf("%s printed %q (%v), want %q", strings.Join(cmd.Args, " "), line, rerr, want)
	}
	return elapsed, nil
}

// ReadEverything reads every regular file under root whole, in directory
// order, one at a time, as a build or a scan of the image would, and
// returns the bytes read.
func ReadEverything(ctx context.Context, root string) (int64, error) {
	buf := make([]byte, 1<<20)
	var total int64
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
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
		// Hide WriterTo/ReaderFrom so the bytes really pass through read(2).
		n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, buf)
		total += n
		return err
	})
	return total, err
}

// PeakRSS returns a live process's peak resident set (VmHWM) in bytes.
func PeakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmHWM of pid %d: %q: %w", pid, v, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("pid %d: no VmHWM in /proc/%d/status", pid, pid)
}
