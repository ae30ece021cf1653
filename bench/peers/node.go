package peers

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/stratafs/strata/bench"
)

// ErrNoContainerd: containerd, ctr or runc is missing and apt-get could
// not install them.
var ErrNoContainerd = errors.New("containerd not usable")

// The binaries every node runs: Debian's containerd 1.6, ctr and runc,
// installed with apt-get when missing (EnsureContainerd).
const (
	containerdBin = "/usr/bin/containerd"
	ctrBin        = "/usr/bin/ctr"
	runcBin       = "/usr/sbin/runc"
	// OverlaySnapshotter is containerd's own snapshotter: every layer
	// downloaded and unpacked into a directory, kernel overlayfs over them.
	OverlaySnapshotter = "overlayfs"
	// NodeNamespace is the containerd namespace of every node's images
	// and containers.
	NodeNamespace = "strata-bench"
)

// Node is one private containerd (Debian's 1.6, with runc) whose
// containers use the snapshotter Snapshotter: containerd's own overlayfs
// ([StartContainerd]), or a proxy snapshotter plugin served by a daemon
// the node starts before containerd and stops after it ([StargzNode],
// [StrataNode]). Its roots, state, configs and sockets live under one
// directory, so that a run starts from nothing local (no content, no
// snapshots) and leaves nothing behind.
//
//	DIR/containerd.toml  containerd's config: root, state, opt, sockets, the proxy plugin
//	DIR/containerd/      containerd's root, state and opt
//	DIR/runc/, DIR/fifo/ runc's state and the containers' stdio FIFOs (ctr run)
//	SOCKS/               containerd.sock(.ttrpc), NAME.sock of the proxy: DIR, or a
//	                     short temporary directory when DIR is too long for a socket path
//
// Only the runc shims' sockets live elsewhere, where containerd 1.6 puts
// them (/run/containerd/s/HASH); a shim removes its own when it exits.
//
// Stop takes it down in order: containers and tasks, containerd, the
// runc shims still naming its socket, the proxy's daemon (its documented
// stop signal, on which it unmounts its layers), then anything still
// mounted below DIR. Everything that needed forcing is reported.
type Node struct {
	Dir         string
	Sock        string // containerd's socket
	Snapshotter string // what `ctr run --snapshotter` names
	socks       string // the sockets' directory
	tmpSocks    bool
	proxy       *service // the proxy snapshotter's daemon; nil for a built-in one
	containerd  *service
	ran         []string // ids of the containers Run started
	// detachedUnder: the proxy snapshotter leaves FUSE mounts below this
	// directory when it stops, served by processes of their own, which
	// Stop unmounts ("": none).
	detachedUnder string
}

// EnsureContainerd installs containerd and runc with apt-get if any of
// containerd, ctr or runc is missing.
func EnsureContainerd(ctx context.Context) error {
	for _, p := range []string{containerdBin, ctrBin, runcBin} {
		if _, err := os.Stat(p); err == nil {
			continue
		}
		if err := aptInstall(ctx, "containerd", "runc"); err != nil {
			return fmt.Errorf("%w: %s missing: %v", ErrNoContainerd, p, err)
		}
		break
	}
	return nil
}

// StartContainerd starts a node under dir (created) whose containers
// use containerd's own overlayfs snapshotter: the peer every lazy
// snapshotter is measured against. On failure the caller still calls
// Stop.
func StartContainerd(ctx context.Context, dir string) (*Node, error) {
	return startNode(ctx, dir, OverlaySnapshotter, nil)
}

// startProxy starts a node's proxy snapshotter daemon serving sock; the
// node's directory exists when it is called, for the daemon's config.
// It returns the service even on failure, for Stop.
type startProxy func(sock string) (*service, error)

// startNode makes dir and the node's sockets' directory, starts the
// proxy snapshotter (when proxy is not nil) as snapshotter and then
// containerd. It always returns the node, for Stop.
func startNode(ctx context.Context, dir, snapshotter string, proxy startProxy) (*Node, error) {
	n := &Node{Dir: dir, Snapshotter: snapshotter, socks: dir}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return n, err
	}
	// containerd refuses socket paths over 104 bytes ("unix socket path
	// too long (> 104)"); a deep work directory gets a short one instead.
	if len(filepath.Join(dir, "containerd.sock.ttrpc")) > 104 {
		s, err := os.MkdirTemp("", "strata-node-")
		if err != nil {
			return n, err
		}
		n.socks, n.tmpSocks = s, true
	}
	n.Sock = filepath.Join(n.socks, "containerd.sock")
	var proxyName, proxySock string
	if proxy != nil {
		proxyName, proxySock = snapshotter, filepath.Join(n.socks, snapshotter+".sock")
	}
	cfg := ContainerdConfig(filepath.Join(dir, "containerd"), n.Sock, proxyName, proxySock)
	if err := os.WriteFile(filepath.Join(dir, "containerd.toml"), []byte(cfg), 0o644); err != nil {
		return n, err
	}
	if proxy != nil {
		var err error
		if n.proxy, err = proxy(proxySock); err != nil {
			return n, err
		}
	}
	var err error
	n.containerd, err = startService(ctx, "containerd", []string{containerdBin, "--config", filepath.Join(dir, "containerd.toml"), "--log-level", "warn"},
		n.Sock, filepath.Join(dir, "containerd.log"), syscall.SIGTERM)
	return n, err
}

// ContainerdConfig is containerd 1.6's config.toml for a private node:
// root, state and opt under root, its own sockets, no CRI, and, unless
// proxyName is "", the proxy snapshotter proxyName served at proxySock.
func ContainerdConfig(root, sock, proxyName, proxySock string) string {
	cfg := fmt.Sprintf(`# containerd for one run of strata's benchmarks
version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing"]

[grpc]
  address = %q

[ttrpc]
  address = %q

[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, filepath.Join(root, "root"), filepath.Join(root, "state"), sock, sock+".ttrpc", filepath.Join(root, "opt"))
	if proxyName != "" {
		cfg += fmt.Sprintf("\n[proxy_plugins.%s]\n  type = \"snapshot\"\n  address = %q\n", proxyName, proxySock)
	}
	return cfg
}

// Alive fails when containerd or the proxy's daemon has exited.
func (n *Node) Alive() error {
	return errors.Join(n.proxy.alive(), n.containerd.alive())
}

// PID is the proxy snapshotter daemon's process id, for its peak RSS (it
// serves the layers' FUSE mounts); containerd's for a node without one.
func (n *Node) PID() int {
	if n.proxy != nil {
		return n.proxy.pid()
	}
	return n.containerd.pid()
}

// ctr runs one ctr (or ctr-like) command against the node, in its
// namespace, and returns its output.
func (n *Node) ctr(ctx context.Context, bin string, args ...string) ([]byte, error) {
	return n.command(ctx, bin, append([]string{"-a", n.Sock, "-n", NodeNamespace}, args...)...)
}

// command runs bin with args and returns its output; a failure quotes
// its stderr and the daemons' logs.
func (n *Node) command(ctx context.Context, bin string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	bench.KillGroupOnCancel(cmd)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s%s", filepath.Base(bin), strings.Join(args, " "), err,
			lastBytes([]byte(stderr.String()), 1500), n.logs())
	}
	return out, nil
}

func (n *Node) logs() string {
	var s string
	if n.proxy != nil {
		s = LogTail(n.proxy.log)
	}
	return s + LogTail(filepath.Join(n.Dir, "containerd.log"))
}

// Pull is `ctr images pull --plain-http --snapshotter SNAPSHOTTER ref`:
// containerd downloads every layer and unpacks it into the node's
// snapshotter, the classic pull. (The registries of strata's benchmarks
// and tests have no TLS.) [StargzNode] and [StrataNode] pull lazily
// instead.
func (n *Node) Pull(ctx context.Context, ref string) error {
	_, err := n.ctr(ctx, ctrBin, "images", "pull", "--plain-http", "--snapshotter", n.Snapshotter, ref)
	return err
}

// Run is `ctr run --rm --snapshotter SNAPSHOTTER ref id argv...`: the
// command in a runc container on the pulled image. It returns the time
// from start to the first line of output, which must begin with want,
// then waits, untimed, for the container to exit and be removed.
func (n *Node) Run(ctx context.Context, ref, id string, start time.Time, want string, argv ...string) (time.Duration, error) {
	n.ran = append(n.ran, id)
	args := append([]string{"-a", n.Sock, "-n", NodeNamespace, "run", "--rm", "--snapshotter", n.Snapshotter,
		"--runc-root", filepath.Join(n.Dir, "runc"), "--fifo-dir", filepath.Join(n.Dir, "fifo"),
		"--env", "PYTHONDONTWRITEBYTECODE=1", ref, id}, argv...)
	d, err := firstLine(ctx, exec.CommandContext(ctx, ctrBin, args...), start, want)
	if err != nil {
		return 0, fmt.Errorf("%w%s", err, n.logs())
	}
	return d, nil
}

// Stop takes the node down (see Node) and reports what needed force. It
// is safe on a node that did not start, or only partly.
func (n *Node) Stop() error {
	var errs []error
	if n.containerd != nil && n.containerd.alive() == nil {
		errs = append(errs, n.removeContainers())
	}
	errs = append(errs, n.containerd.stop())
	if n.Sock != "" {
		if pids := killNaming(n.Sock); len(pids) > 0 {
			errs = append(errs, fmt.Errorf("runc shims %v of %s %w after containerd stopped; killed them", pids, n.Sock, errLeftover))
			for _, id := range n.ran {
				os.Remove(shimSocket(n.Sock, NodeNamespace, id))
			}
		}
	}
	errs = append(errs, n.proxy.stop())
	if n.detachedUnder != "" {
		errs = append(errs, unmountDetached(n.detachedUnder))
	}
	left := MountsUnder(n.Dir)
	for _, m := range slices.Backward(left) {
		ForceUnmount(m)
	}
	if len(left) > 0 {
		errs = append(errs, fmt.Errorf("%v still mounted under %s after the node stopped; detached", left, n.Dir))
	}
	if n.tmpSocks {
		errs = append(errs, os.RemoveAll(n.socks))
	}
	return errors.Join(errs...)
}

// removeContainers kills and deletes every task and container left in
// the node's namespace (only an interrupted run leaves any), so that no
// container outlives the node. A second pass catches a task whose
// creation was still under way when the first pass listed them.
func (n *Node) removeContainers() error {
	ctx, cancel := context.WithTimeout(context.Background(), exitWait)
	defer cancel()
	var left []string
	for pass := range 2 {
		left = nil
		for _, what := range []string{"tasks", "containers"} {
			out, err := n.ctr(ctx, ctrBin, what, "ls", "-q")
			if err != nil {
				return err
			}
			for _, id := range strings.Fields(string(out)) {
				if !slices.Contains(left, id) {
					left = append(left, id)
				}
			}
		}
		if len(left) == 0 {
			return nil
		}
		for _, id := range left {
			n.ctr(ctx, ctrBin, "tasks", "kill", "-s", "SIGKILL", id)
			n.ctr(ctx, ctrBin, "tasks", "delete", "-f", id)
			n.ctr(ctx, ctrBin, "containers", "delete", id)
		}
		if pass == 0 {
			time.Sleep(500 * time.Millisecond)
		}
	}
	return fmt.Errorf("containers %v were left in the node; deleted them", left)
}

// unmountDetached unmounts the FUSE mounts below dir that a snapshotter's
// detached mount processes serve, and waits for those processes, which
// name dir, to end with their mounts; one still running after exitWait is
// killed, and reported.
func unmountDetached(dir string) error {
	for _, m := range slices.Backward(MountsUnder(dir)) {
		if FsType(m) == "fuse" || strings.HasPrefix(FsType(m), "fuse.") {
			syscall.Unmount(m, 0)
		}
	}
	deadline := time.Now().Add(exitWait)
	for len(pidsNaming(dir)) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if pids := killNaming(dir); len(pids) > 0 {
		return fmt.Errorf("detached mount processes %v of %s %w after their mounts were unmounted; killed them", pids, dir, errLeftover)
	}
	return nil
}
