package netshape

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// This file is the check of a link with the real client: a curl GET of a
// blob through the relay, timed by curl itself. A benchmark prints these
// figures beside the links it claims to use (a relay on a busy machine may
// fall short of its rate, and this is where that shows).

// ErrCurlOutput means curl's -w line could not be read.
var ErrCurlOutput = errors.New("netshape: unexpected curl output")

// EnsureCurl returns the path of curl, installing Debian's package if it
// is missing; the check is only meaningful with the real client.
func EnsureCurl(ctx context.Context) (string, error) {
	if p, err := exec.LookPath("curl"); err == nil {
		return p, nil
	}
	fmt.Fprintln(os.Stderr, "netshape: curl not found; apt-get install -y curl")
	cmd := exec.CommandContext(ctx, "apt-get", "install", "-y", "curl")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("curl is missing and apt-get install -y curl failed: %w", err)
	}
	return exec.LookPath("curl")
}

// CurlVersion is the first line of `curl --version`.
func CurlVersion(ctx context.Context, curl string) string {
	out, err := exec.CommandContext(ctx, curl, "--version").Output()
	if err != nil {
		return "unknown"
	}
	first, _, _ := strings.Cut(string(out), "\n")
	return first
}

// Fetch is one curl GET of a blob's bytes [Off, Off+N), or of all of it.
type Fetch struct {
	URL      string // as the client would use it
	Origin   string // host:port the URL names
	Via      string // host:port curl connects to instead (the relay)
	Off, N   int64
	Full     bool
	WantCode int
}

// Timing is what curl reports for one transfer, in seconds.
type Timing struct {
	TTFB, Total float64
}

// Run fetches with a new curl process, hence a new connection. The URL is
// kept as it is (Host header, TLS name) and only the TCP connection goes
// to the relay, through --connect-to.
func (f Fetch) Run(ctx context.Context, curl string) (Timing, error) {
	oh, op, _ := net.SplitHostPort(f.Origin)
	vh, vp, _ := net.SplitHostPort(f.Via)
	args := []string{"--silent", "--show-error", "--noproxy", "*", "--max-time", "600",
		"--connect-to", fmt.Sprintf("%s:%s:%s:%s", oh, op, vh, vp),
		"--output", "/dev/null",
		"--write-out", "%{http_code} %{time_starttransfer} %{time_total} %{size_download}"}
	if !f.Full {
		args = append(args, "--range", fmt.Sprintf("%d-%d", f.Off, f.Off+f.N-1))
	}
	args = append(args, f.URL)
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, curl, args...)
	cmd.Stderr = &stderr
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.Output()
	if err != nil {
		return Timing{}, fmt.Errorf("curl %s: %w: %s", f.URL, err, strings.TrimSpace(stderr.String()))
	}
	return f.parse(string(out))
}

func (f Fetch) parse(out string) (Timing, error) {
	fields := strings.Fields(out)
	if len(fields) != 4 {
		return Timing{}, fmt.Errorf("%w: %q", ErrCurlOutput, out)
	}
	code, err1 := strconv.Atoi(fields[0])
	ttfb, err2 := strconv.ParseFloat(fields[1], 64)
	total, err3 := strconv.ParseFloat(fields[2], 64)
	size, err4 := strconv.ParseInt(fields[3], 10, 64)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return Timing{}, fmt.Errorf("%w: %q: %v", ErrCurlOutput, out, err)
	}
	if code != f.WantCode || size != f.N {
		return Timing{}, fmt.Errorf("GET %s (bytes %d+%d): HTTP %d with %d bytes, want %d with %d",
			f.URL, f.Off, f.N, code, size, f.WantCode, f.N)
	}
	return Timing{TTFB: ttfb, Total: total}, nil
}
