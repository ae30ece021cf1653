package registry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Sentinel errors, tested with errors.Is.
var (
	// ErrNoBinary: docker-registry is not installed and apt-get could not
	// install it.
	ErrNoBinary = errors.New("docker-registry not available")
	// ErrNotReady: the registry exited, or did not answer /v2/ in time.
	ErrNotReady = errors.New("registry did not start")
	// ErrStopped: the registry was asked for something after Stop.
	ErrStopped = errors.New("registry stopped")
)

// DefaultBinary is where Debian's docker-registry package installs it.
const DefaultBinary = "/usr/bin/docker-registry"

// Options configure Start.
type Options struct {
	// Binary is the registry program; default DefaultBinary, installed
	// with apt-get if missing.
	Binary string
	// StorageDir holds the blobs and manifests. Default: a new temporary
	// directory, removed by Stop. A given directory is kept (so a
	// registry can be restarted on the same content) unless RemoveStorage.
	StorageDir    string
	RemoveStorage bool
	// ReadyTimeout bounds the wait for /v2/ to answer; default 15 s.
	ReadyTimeout time.Duration
}

// Registry is a running docker-registry, listening on 127.0.0.1 only.
type Registry struct {
	// Host is "127.0.0.1:PORT", the registry part of an image reference.
	Host string
	// URL is "http://127.0.0.1:PORT".
	URL string

	cmd           *exec.Cmd
	exited        chan struct{} // closed when the process has been reaped
	waitErr       error         // the process's exit, valid once exited is closed
	confDir       string        // config and log; always removed by Stop
	storage       string
	removeStorage bool

	once    sync.Once
	stopErr error
}

// Start writes a config into a temporary directory and starts the
// registry on a free loopback port, in its own process group; it returns
// once GET /v2/ answers 200. Stop must be called (even if Start's caller
// fails later): it is the only thing that ends the process.
func Start(ctx context.Context, o Options) (*Registry, error) {
	if err := o.setDefaults(ctx); err != nil {
		return nil, err
	}
	confDir, err := os.MkdirTemp("", "strata-registry-")
	if err != nil {
		return nil, err
	}
	r := &Registry{confDir: confDir, storage: o.StorageDir, removeStorage: o.RemoveStorage, exited: make(chan struct{})}
	if r.storage == "" {
		r.storage, r.removeStorage = filepath.Join(confDir, "storage"), true
	}
	// A port picked now may be taken before the registry binds it; the
	// registry then exits at once and the next port is tried.
	for attempt := 0; ; attempt++ {
		err = r.start(ctx, o)
		if err == nil || attempt == 2 || ctx.Err() != nil || !r.exitedEarly() {
			break
		}
		r.exited = make(chan struct{})
	}
	if err != nil {
		r.Stop()
		return nil, err
	}
	return r, nil
}

func (o *Options) setDefaults(ctx context.Context) error {
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 15 * time.Second
	}
	if o.Binary != "" {
		return nil
	}
	o.Binary = DefaultBinary
	return ensureInstalled(ctx, o.Binary)
}

func (r *Registry) start(ctx context.Context, o Options) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	r.Host = "127.0.0.1:" + strconv.Itoa(port)
	r.URL = "http://" + r.Host
	conf := filepath.Join(r.confDir, "config.yml")
	if err := os.WriteFile(conf, []byte(config(r.Host, r.storage)), 0o644); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(r.confDir, "registry.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	// Not CommandContext: the process must outlive Start's ctx.
	r.cmd = exec.Command(o.Binary, "serve", conf)
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	// Its own group, so Stop reaches any child; and killed if this
	// process dies without calling Stop.
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := r.cmd.Start(); err != nil {
		return fmt.Errorf("registry: start %s: %w", o.Binary, err)
	}
	go func(cmd *exec.Cmd, done chan struct{}) {
		r.waitErr = cmd.Wait()
		close(done)
	}(r.cmd, r.exited)
	return r.waitReady(ctx, o.ReadyTimeout)
}

// config is the registry's YAML: filesystem storage, deletes allowed, no
// auth, warnings only, listening on addr.
func config(addr, storage string) string {
	return fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %q
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %q
  headers:
    X-Content-Type-Options: [nosniff]
`, storage, addr)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitReady polls GET /v2/ until it answers 200, the process exits, or
// the timeout passes.
func (r *Registry) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.URL+"/v2/", nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-r.exited:
			return fmt.Errorf("registry: %w: exited (%v)%s", ErrNotReady, r.waitErr, r.logTail())
		case <-ctx.Done():
			return fmt.Errorf("registry: %w: no answer on %s/v2/ (%v)%s", ErrNotReady, r.URL, ctx.Err(), r.logTail())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (r *Registry) exitedEarly() bool {
	select {
	case <-r.exited:
		return true
	default:
		return false
	}
}

func (r *Registry) logTail() string {
	b, _ := os.ReadFile(filepath.Join(r.confDir, "registry.log"))
	if len(b) > 2048 {
		b = b[len(b)-2048:]
	}
	if len(b) == 0 {
		return ""
	}
	return ": " + string(b)
}

// PID is the registry process's id (and its process group's), 0 if it
// never started.
func (r *Registry) PID() int {
	if r.cmd == nil || r.cmd.Process == nil {
		return 0
	}
	return r.cmd.Process.Pid
}

// Stop ends the registry's process group (SIGTERM, then SIGKILL after
// 5 s), waits for the process, and removes the config directory and, if
// Start made it or Options.RemoveStorage says so, the storage. It is safe
// to call more than once, and from a test's Cleanup after a failure; later
// calls return the first call's result.
func (r *Registry) Stop() error {
	r.once.Do(func() { r.stopErr = r.stop() })
	return r.stopErr
}

func (r *Registry) stop() error {
	var err error
	if pid := r.PID(); pid > 0 {
		err = killGroup(pid, r.exited)
	}
	if rmErr := os.RemoveAll(r.confDir); err == nil {
		err = rmErr
	}
	if r.removeStorage {
		if rmErr := os.RemoveAll(r.storage); err == nil {
			err = rmErr
		}
	}
	return err
}

// killGroup signals the process group pgid, escalating to SIGKILL, until
// its leader has been reaped (exited closed), then kills what is left of
// the group.
func killGroup(pgid int, exited <-chan struct{}) error {
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			return fmt.Errorf("registry: process %d did not die after SIGKILL", pgid)
		}
	}
	// Any child left in the group goes too (the registry starts none, a
	// wrapper script might). Orphans are reaped by init, so the group
	// lingers a moment after the signal.
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := syscall.Kill(-pgid, syscall.SIGKILL)
		if errors.Is(err, syscall.ESRCH) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("registry: kill group %d: %w", pgid, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("registry: process group %d still has members after SIGKILL", pgid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ensureInstalled installs Debian's docker-registry if bin is missing.
func ensureInstalled(ctx context.Context, bin string) error {
	if _, err := os.Stat(bin); err == nil {
		return nil
	}
	install := func() error {
		cmd := exec.CommandContext(ctx, "apt-get", "install", "-y", "-q", "docker-registry")
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("apt-get install docker-registry: %w: %s", err, tailOf(out))
		}
		return nil
	}
	err := install()
	if err != nil {
		if out, uerr := exec.CommandContext(ctx, "apt-get", "update", "-q").CombinedOutput(); uerr != nil {
			return fmt.Errorf("registry: %w: apt-get update: %v: %s", ErrNoBinary, uerr, tailOf(out))
		}
		err = install()
	}
	if err != nil {
		return fmt.Errorf("registry: %w: %v", ErrNoBinary, err)
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("registry: %w: installed, but %s is missing", ErrNoBinary, bin)
	}
	return nil
}

func tailOf(b []byte) string {
	if len(b) > 1024 {
		b = b[len(b)-1024:]
	}
	return string(b)
}
