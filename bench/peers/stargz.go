package peers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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
	"golang.org/x/sys/unix"
)

// ErrNoStargz: STARGZ_BIN does not hold stargz-snapshotter's binaries,
// or containerd or runc is missing and apt-get could not install them.
var ErrNoStargz = errors.New("stargz-snapshotter not usable")

// The binaries a stargz node runs: the two from STARGZ_BIN (the user
// builds them; the suite does not), and Debian's containerd 1.6, ctr and
// runc, installed with apt-get when missing.
const (
	StargzGRPC    = "containerd-stargz-grpc"
	StargzCtr     = "ctr-remote"
	containerdBin = "/usr/bin/containerd"
	ctrBin        = "/usr/bin/ctr"
	runcBin       = "/usr/sbin/runc"
	// StargzSnapshotter is the proxy snapshotter's name in containerd.
	StargzSnapshotter = "stargz"
	stargzNamespace   = "strata-bench"
)

// StargzNode is one private node running stargz-snapshotter: a
// containerd-stargz-grpc and a containerd that uses it as its proxy
// snapshotter "stargz", with their roots, state and sockets under one
// directory, so that a run starts from nothing local (no content, no
// snapshots, no stargz cache) and leaves nothing behind.
//
//	DIR/stargz.toml      stargz's config: the registry hosts, over plain HTTP
//	DIR/stargz/          its root: snapshots, the FUSE mounts of the layers, its cache
//	DIR/containerd.toml  containerd's config: root, state, opt, sockets, proxy_plugins.stargz
//	DIR/containerd/      containerd's root, state and opt
//	DIR/runc/, DIR/fifo/ runc's state and the containers' stdio FIFOs (ctr run)
//	SOCKS/               containerd.sock(.ttrpc), stargz.sock: DIR, or a short
//	                     temporary directory when DIR is too long for a socket path
//
// Only the runc shims' sockets live elsewhere, where containerd 1.6 puts
// them (/run/containerd/s/HASH); a shim removes its own when it exits.
//
// Stop takes it down in order: containers and tasks, containerd, the
// runc shims still naming its socket, containerd-stargz-grpc (SIGINT,
// on which it unmounts its layers), then anything still mounted below
// DIR. Everything that needed forcing is reported.
type StargzNode struct {
	Dir        string
	Sock       string // containerd's socket
	bin        string
	socks      string // the sockets' directory
	tmpSocks   bool
	stargz     *service
	containerd *service
	ran        []string // ids of the containers Run started
}

// EnsureStargz checks that bin holds stargz-snapshotter's binaries and
// installs containerd and runc with apt-get if they are missing.
func EnsureStargz(ctx context.Context, bin string) error {
	for _, b := range []string{StargzGRPC, StargzCtr} {
		if st, err := os.Stat(filepath.Join(bin, b)); err != nil || st.Mode()&0o111 == 0 {
			return fmt.Errorf("%w: STARGZ_BIN=%s has no executable %s (build it from github.com/containerd/stargz-snapshotter/cmd)", ErrNoStargz, bin, b)
		}
	}
	for _, p := range []string{containerdBin, ctrBin, runcBin} {
		if _, err := os.Stat(p); err == nil {
			continue
		}
		if err := aptInstall(ctx, "containerd", "runc"); err != nil {
			return fmt.Errorf("%w: %s missing: %v", ErrNoStargz, p, err)
		}
		break
	}
	return nil
}

func aptInstall(ctx context.Context, pkgs ...string) error {
	install := func() ([]byte, error) {
		cmd := exec.CommandContext(ctx, "apt-get", append([]string{"install", "-y", "-q"}, pkgs...)...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		return cmd.CombinedOutput()
	}
	out, err := install()
	if err != nil {
		if _, uerr := exec.CommandContext(ctx, "apt-get", "update", "-q").CombinedOutput(); uerr == nil {
			out, err = install()
		}
	}
	if err != nil {
		return fmt.Errorf("apt-get install %s: %w: %s", strings.Join(pkgs, " "), err, lastBytes(out, 1024))
	}
	return nil
}

func lastBytes(b []byte, n int) string {
	s := strings.TrimSpace(string(b))
	if len(s) > n {
		s = "..." + s[len(s)-n:]
	}
	return s
}

// StartStargz starts a node under dir (created) with the binaries in bin.
// hosts are the registries it pulls from ("127.0.0.1:PORT"), reached over
// plain HTTP. On failure the caller still calls Stop.
func StartStargz(ctx context.Context, bin, dir string, hosts []string) (*StargzNode, error) {
	n := &StargzNode{Dir: dir, bin: bin, socks: dir}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return n, err
	}
	// containerd refuses socket paths over 104 bytes ("unix socket path
	// too long (> 104)"); a deep work directory gets a short one instead.
	if len(filepath.Join(dir, "containerd.sock.ttrpc")) > 104 {
		s, err := os.MkdirTemp("", "strata-stargz-")
		if err != nil {
			return n, err
		}
		n.socks, n.tmpSocks = s, true
	}
	n.Sock = filepath.Join(n.socks, "containerd.sock")
	gsock := filepath.Join(n.socks, "stargz.sock")
	files := map[string]string{
		"stargz.toml":     StargzConfig(hosts),
		"containerd.toml": ContainerdConfig(filepath.Join(dir, "containerd"), n.Sock, gsock),
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			return n, err
		}
	}
	var err error
	n.stargz, err = startService(ctx, StargzGRPC, []string{filepath.Join(bin, StargzGRPC), "--root", filepath.Join(dir, "stargz"),
		"--address", gsock, "--config", filepath.Join(dir, "stargz.toml"), "--log-level", "warn"},
		gsock, filepath.Join(dir, "stargz.log"), syscall.SIGINT)
	if err != nil {
		return n, err
	}
	n.containerd, err = startService(ctx, "containerd", []string{containerdBin, "--config", filepath.Join(dir, "containerd.toml"), "--log-level", "warn"},
		n.Sock, filepath.Join(dir, "containerd.log"), syscall.SIGTERM)
	return n, err
}

// StargzConfig is containerd-stargz-grpc's config.toml: each host is its
// own mirror over plain HTTP (the suite's registry and relays have no TLS).
// Everything else keeps stargz's defaults (prefetch of the landmarked
// files, background fetch of whole layers after a quiet period).
func StargzConfig(hosts []string) string {
	var b strings.Builder
	b.WriteString("# containerd-stargz-grpc for one run of strata's benchmark suite\n")
	for _, h := range hosts {
		fmt.Fprintf(&b, "\n[[resolver.host.%q.mirrors]]\nhost = %q\ninsecure = true\n", h, h)
	}
	return b.String()
}

// ContainerdConfig is containerd 1.6's config.toml for a private node:
// root, state and opt under root, its own sockets, no CRI, and
// stargz-snapshotter as the proxy snapshotter "stargz" at stargzSock.
func ContainerdConfig(root, sock, stargzSock string) string {
	return fmt.Sprintf(`# containerd for one run of strata's benchmark suite
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

[proxy_plugins.%s]
  type = "snapshot"
  address = %q
`, filepath.Join(root, "root"), filepath.Join(root, "state"), sock, sock+".ttrpc", filepath.Join(root, "opt"), StargzSnapshotter, stargzSock)
}

// PID is containerd-stargz-grpc's process id, for its peak RSS: it
// serves the layers' FUSE mounts.
func (n *StargzNode) PID() int { return n.stargz.pid() }

// Alive fails when either daemon has exited.
func (n *StargzNode) Alive() error {
	return errors.Join(n.stargz.alive(), n.containerd.alive())
}

// ctr runs one ctr (or ctr-remote) command against the node and returns
// its output.
func (n *StargzNode) ctr(ctx context.Context, bin string, args ...string) ([]byte, error) {
	argv := append([]string{"-a", n.Sock, "-n", stargzNamespace}, args...)
	cmd := exec.CommandContext(ctx, bin, argv...)
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

func (n *StargzNode) logs() string {
	return LogTail(filepath.Join(n.Dir, "stargz.log")) + LogTail(filepath.Join(n.Dir, "containerd.log"))
}

// Pull is `ctr-remote images rpull --plain-http ref`: the manifest and
// config are fetched, and each layer is prepared in the stargz
// snapshotter with the remote-snapshot labels, so stargz mounts it
// lazily instead of containerd downloading it. (`ctr pull` passes no
// such labels and would download every layer.)
func (n *StargzNode) Pull(ctx context.Context, ref string) error {
	_, err := n.ctr(ctx, filepath.Join(n.bin, StargzCtr), "images", "rpull", "--plain-http", ref)
	return err
}

// Run is `ctr run --rm --snapshotter stargz ref id argv...`: the command
// in a runc container on the pulled image. It returns the time from
// start to the first line of output, which must begin with want, then
// waits, untimed, for the container to exit and be removed.
func (n *StargzNode) Run(ctx context.Context, ref, id string, start time.Time, want string, argv ...string) (time.Duration, error) {
	n.ran = append(n.ran, id)
	args := append([]string{"-a", n.Sock, "-n", stargzNamespace, "run", "--rm", "--snapshotter", StargzSnapshotter,
		"--runc-root", filepath.Join(n.Dir, "runc"), "--fifo-dir", filepath.Join(n.Dir, "fifo"),
		"--env", "PYTHONDONTWRITEBYTECODE=1", ref, id}, argv...)
	d, err := firstLine(ctx, exec.CommandContext(ctx, ctrBin, args...), start, want)
	if err != nil {
		return 0, fmt.Errorf("%w%s", err, n.logs())
	}
	return d, nil
}

// snapshotMount is one entry of `ctr snapshots prepare --mounts`.
type snapshotMount struct {
	Type    string   `json:"Type"`
	Source  string   `json:"Source"`
	Options []string `json:"Options"`
}

// MountImage prepares an active snapshot key on the image whose top
// layer has chainID (the image must be pulled) and mounts it on mnt on
// the host: kernel overlayfs over stargz's FUSE mounts of the layers,
// with an upper in stargz's root, as `ctr run` would mount the rootfs.
// It returns the unmount.
func (n *StargzNode) MountImage(ctx context.Context, chainID, key, mnt string) (func() error, error) {
	out, err := n.ctr(ctx, ctrBin, "snapshots", "--snapshotter", StargzSnapshotter, "prepare", "--mounts", key, chainID)
	if err != nil {
		return nil, err
	}
	var ms []snapshotMount
	if err := json.Unmarshal(out, &ms); err != nil || len(ms) != 1 {
		return nil, fmt.Errorf("ctr snapshots prepare --mounts: %q: want one mount (%v)", out, err)
	}
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return nil, err
	}
	flags, data := mountFlags(ms[0])
	if err := unix.Mount(ms[0].Source, mnt, ms[0].Type, flags, data); err != nil {
		return nil, fmt.Errorf("mount %s %s on %s -o %s: %w", ms[0].Type, ms[0].Source, mnt, data, err)
	}
	return func() error { return Unmount(mnt) }, nil
}

// mountFlags turns a snapshotter's mount into mount(2)'s flags and data:
// a "bind" (an image of one layer) becomes MS_BIND, and the options mount(8)
// reads as flags are taken out of the data.
func mountFlags(m snapshotMount) (uintptr, string) {
	var flags uintptr
	var data []string
	if m.Type == "bind" {
		flags |= unix.MS_BIND
	}
	for _, o := range m.Options {
		switch o {
		case "rbind":
			flags |= unix.MS_BIND | unix.MS_REC
		case "bind":
			flags |= unix.MS_BIND
		case "ro":
			flags |= unix.MS_RDONLY
		case "rw":
		default:
			data = append(data, o)
		}
	}
	return flags, strings.Join(data, ",")
}

// Stop takes the node down (see StargzNode) and reports what needed force.
func (n *StargzNode) Stop() error {
	var errs []error
	if n.containerd != nil && n.containerd.alive() == nil {
		errs = append(errs, n.removeContainers())
	}
	errs = append(errs, n.containerd.stop())
	if n.Sock != "" {
		if pids := killNaming(n.Sock); len(pids) > 0 {
			errs = append(errs, fmt.Errorf("runc shims %v of %s %w after containerd stopped; killed them", pids, n.Sock, errLeftover))
			for _, id := range n.ran {
				os.Remove(shimSocket(n.Sock, stargzNamespace, id))
			}
		}
	}
	errs = append(errs, n.stargz.stop())
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
func (n *StargzNode) removeContainers() error {
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

// shimSocket is where containerd 1.6's runc shim of container id listens
// (runtime/v2/shim.SocketAddress): a hash of containerd's address, the
// namespace and the id, under /run/containerd/s.
func shimSocket(address, ns, id string) string {
	sum := sha256.Sum256([]byte(filepath.Join(address, ns, id)))
	return filepath.Join("/run/containerd/s", hex.EncodeToString(sum[:]))
}

// ChainID is the chain ID of an image's top layer from its diff IDs
// ("sha256:..."), lowest first: what containerd names the committed
// snapshot of the whole image (OCI image-spec, config.md).
func ChainID(diffIDs []string) string {
	if len(diffIDs) == 0 {
		return ""
	}
	chain := diffIDs[0]
	for _, d := range diffIDs[1:] {
		sum := sha256.Sum256([]byte(chain + " " + d))
		chain = "sha256:" + hex.EncodeToString(sum[:])
	}
	return chain
}
