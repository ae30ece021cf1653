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
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrNoStargz: STARGZ_BIN does not hold stargz-snapshotter's binaries,
// or containerd or runc is missing and apt-get could not install them.
var ErrNoStargz = errors.New("stargz-snapshotter not usable")

// The binaries a stargz node runs besides a node's own: the two from
// STARGZ_BIN (the user builds them; the suite does not).
const (
	StargzGRPC = "containerd-stargz-grpc"
	StargzCtr  = "ctr-remote"
	// StargzSnapshotter is the proxy snapshotter's name in containerd.
	StargzSnapshotter = "stargz"
)

// StargzNode is one private [Node] running stargz-snapshotter: a
// containerd-stargz-grpc serving the proxy snapshotter "stargz", started
// before containerd and stopped after it with SIGINT, on which it
// unmounts its layers. Besides a node's files:
//
//	DIR/stargz.toml      stargz's config: the registry hosts, over plain HTTP
//	DIR/stargz/          its root: snapshots, the FUSE mounts of the layers, its cache
//	DIR/stargz.log       its output
type StargzNode struct {
	*Node
	bin string
}

// EnsureStargz checks that bin holds stargz-snapshotter's binaries and
// installs containerd and runc with apt-get if they are missing.
func EnsureStargz(ctx context.Context, bin string) error {
	for _, b := range []string{StargzGRPC, StargzCtr} {
		if st, err := os.Stat(filepath.Join(bin, b)); err != nil || st.Mode()&0o111 == 0 {
			return fmt.Errorf("%w: STARGZ_BIN=%s has no executable %s (build it from github.com/containerd/stargz-snapshotter/cmd)", ErrNoStargz, bin, b)
		}
	}
	if err := EnsureContainerd(ctx); err != nil {
		return fmt.Errorf("%w: %v", ErrNoStargz, err)
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
	n, err := startNode(ctx, dir, StargzSnapshotter, func(sock string) (*service, error) {
		if err := os.WriteFile(filepath.Join(dir, "stargz.toml"), []byte(StargzConfig(hosts)), 0o644); err != nil {
			return nil, err
		}
		return startService(ctx, StargzGRPC, []string{filepath.Join(bin, StargzGRPC), "--root", filepath.Join(dir, "stargz"),
			"--address", sock, "--config", filepath.Join(dir, "stargz.toml"), "--log-level", "warn"},
			sock, filepath.Join(dir, "stargz.log"), syscall.SIGINT)
	})
	return &StargzNode{Node: n, bin: bin}, err
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

// Pull is `ctr-remote images rpull --plain-http ref`: the manifest and
// config are fetched, and each layer is prepared in the stargz
// snapshotter with the remote-snapshot labels, so stargz mounts it
// lazily instead of containerd downloading it. (`ctr pull` passes no
// such labels and would download every layer.)
func (n *StargzNode) Pull(ctx context.Context, ref string) error {
	_, err := n.ctr(ctx, filepath.Join(n.bin, StargzCtr), "images", "rpull", "--plain-http", ref)
	return err
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
