package main

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

// ensureCurl returns the path of curl, installing Debian's package if it
// is missing; the check is only meaningful with the real client.
func ensureCurl(ctx context.Context) (string, error) {
	if p, err := exec.LookPath("curl"); err == nil {
		return p, nil
	}
	fmt.Fprintln(os.Stderr, "linkcheck: curl not found; apt-get install -y curl")
	cmd := exec.CommandContext(ctx, "apt-get", "install", "-y", "curl")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("curl is missing and apt-get install -y curl failed: %w", err)
	}
	return exec.LookPath("curl")
}

func curlVersion(ctx context.Context, curl string) string {
	out, err := exec.CommandContext(ctx, curl, "--version").Output()
	if err != nil {
		return "unknown"
	}
	first, _, _ := strings.Cut(string(out), "\n")
	return first
}

// fetch is one curl GET of a blob's bytes [off, off+n), or of all of it.
type fetch struct {
	url      string // as the client would use it
	origin   string // host:port the URL names
	via      string // host:port curl connects to instead (the relay)
	off, n   int64
	full     bool
	wantCode int
}

// timing is what curl reports for one transfer, in seconds.
type timing struct {
	ttfb, total float64
}

// errCurlOutput means curl's -w line could not be read.
var errCurlOutput = errors.New("unexpected curl output")

// run fetches with a new curl process, hence a new connection. The URL is
// kept as it is (Host header, TLS name) and only the TCP connection goes
// to the relay, through --connect-to.
func (f fetch) run(ctx context.Context, curl string) (timing, error) {
	oh, op, _ := net.SplitHostPort(f.origin)
	vh, vp, _ := net.SplitHostPort(f.via)
	args := []string{"--silent", "--show-error", "--noproxy", "*", "--max-time", "600",
		"--connect-to", fmt.Sprintf("%s:%s:%s:%s", oh, op, vh, vp),
		"--output", "/dev/null",
		"--write-out", "%{http_code} %{time_starttransfer} %{time_total} %{size_download}"}
	if !f.full {
		args = append(args, "--range", fmt.Sprintf("%d-%d", f.off, f.off+f.n-1))
	}
	args = append(args, f.url)
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, curl, args...)
	cmd.Stderr = &stderr
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.Output()
	if err != nil {
		return timing{}, fmt.Errorf("curl %s: %w: %s", f.url, err, strings.TrimSpace(stderr.String()))
	}
	return f.parse(string(out))
}

func (f fetch) parse(out string) (timing, error) {
	fields := strings.Fields(out)
	if len(fields) != 4 {
		return timing{}, fmt.Errorf("%w: %q", errCurlOutput, out)
	}
	code, err1 := strconv.Atoi(fields[0])
	ttfb, err2 := strconv.ParseFloat(fields[1], 64)
	total, err3 := strconv.ParseFloat(fields[2], 64)
	size, err4 := strconv.ParseInt(fields[3], 10, 64)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return timing{}, fmt.Errorf("%w: %q: %v", errCurlOutput, out, err)
	}
	if code != f.wantCode || size != f.n {
		return timing{}, fmt.Errorf("GET %s (bytes %d+%d): HTTP %d with %d bytes, want %d with %d",
			f.url, f.off, f.n, code, size, f.wantCode, f.n)
	}
	return timing{ttfb: ttfb, total: total}, nil
}
