package peers

import (
	"context"
	"path/filepath"
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
	bin string
}

// StartStrataNode starts a node under dir (created) with the
// strata-snapshotter binary snapshotterBin. Registries on 127.0.0.1 are
// reached over plain HTTP (the snapshotter allows it for loopback). On
// failure the caller still calls Stop.
func StartStrataNode(ctx context.Context, snapshotterBin, dir string) (*StrataNode, error) {
	n, err := startNode(ctx, dir, StrataSnapshotter, func(sock string) (*service, error) {
		return startService(ctx, StrataSnapshotterBin, []string{snapshotterBin, "serve", "--root", filepath.Join(dir, "strata"),
			"--address", sock, "--cache", filepath.Join(dir, "cache")},
			sock, filepath.Join(dir, "strata-snapshotter.log"), syscall.SIGTERM)
	})
	return &StrataNode{Node: n, bin: snapshotterBin}, err
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
