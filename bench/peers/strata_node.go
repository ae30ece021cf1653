package peers

import (
	"context"
	"path/filepath"
	"slices"
	"syscall"
)

// The name of strata's containerd snapshotter binary and of the proxy
// snapshotter it serves.
const (
	StrataSnapshotterBin = "strata-snapshotter"
	StrataSnapshotter    = "strata"
)

// StrataNode is one private [Node] running strata's snapshotter:
// `strata-snapshotter serve` serving the proxy snapshotter "strata",
// started before containerd and stopped after it with SIGTERM, on which
// it unmounts its FUSE mounts. Besides a node's files:
//
//	DIR/strata/               its root: snapshots, metadata, the FUSE mounts
//	DIR/cache/                its chunk cache (fresh: nothing local)
//	DIR/strata-snapshotter.log its output
type StrataNode struct {
	*Node
	bin   string
	start startProxy
}

// StartStrataNode starts a node under dir (created) with the
// strata-snapshotter binary snapshotterBin, whose serve gets serveArgs
// too. Registries on 127.0.0.1 are reached over plain HTTP (the
// snapshotter allows it for loopback). On failure the caller still calls
// Stop. With --detached-mounts, Stop unmounts the lazy layers' mounts the
// snapshotter leaves, and their processes end with them.
func StartStrataNode(ctx context.Context, snapshotterBin, dir string, serveArgs ...string) (*StrataNode, error) {
	start := func(sock string) (*service, error) {
		argv := append([]string{snapshotterBin, "serve", "--root", filepath.Join(dir, "strata"),
			"--address", sock, "--cache", filepath.Join(dir, "cache")}, serveArgs...)
		return startService(ctx, StrataSnapshotterBin, argv, sock, filepath.Join(dir, "strata-snapshotter.log"), syscall.SIGTERM)
	}
	n, err := startNode(ctx, dir, StrataSnapshotter, start)
	if slices.Contains(serveArgs, "--detached-mounts") {
		n.detachedUnder = filepath.Join(dir, "strata")
	}
	return &StrataNode{Node: n, bin: snapshotterBin, start: start}, err
}

// RestartSnapshotter stops the node's snapshotter (SIGTERM, as a service
// manager would) and starts it again with the same arguments, while
// containerd and its containers run on.
func (n *StrataNode) RestartSnapshotter() error {
	if err := n.proxy.stop(); err != nil {
		return err
	}
	s, err := n.start(n.proxy.sock)
	n.proxy = s
	return err
}

// Pull is `strata-snapshotter pull --plain-http REF` against the node's
// containerd: the manifest and config are fetched and each layer is
// prepared in strata's snapshotter with the remote-snapshot labels, so
// that a lazy layer (zstd:chunked, eStargz) is mounted, not downloaded.
func (n *StrataNode) Pull(ctx context.Context, ref string) error {
	_, err := n.command(ctx, n.bin, "pull", "--address", n.Sock, "--namespace", NodeNamespace,
		"--snapshotter", StrataSnapshotter, "--plain-http", ref)
	return err
}
