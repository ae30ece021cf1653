package snapshotter

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/containerd/snapshots/testsuite"
	"github.com/stratafs/strata/cache"
)

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		os.Stderr.WriteString("snapshotter: tests must run as root: they mount overlayfs and FUSE\n")
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// TestContainerdSuite runs containerd's own snapshotter test suite: every
// snapshot it makes is an ordinary one, so this checks that strata's
// wrapping keeps containerd's semantics (and that New and Close do).
func TestContainerdSuite(t *testing.T) {
	// Named as containerd's overlay snapshotter, which the suite knows
	// cannot rename a directory of a lower layer (EXDEV, as overlayfs
	// without redirect_dir).
	testsuite.SnapshotterSuite(t, "overlayfs", func(ctx context.Context, root string) (snapshots.Snapshotter, func() error, error) {
		disk, err := cache.Open(filepath.Join(root, "..", "cache"))
		if err != nil {
			return nil, nil, err
		}
		sn, err := New(ctx, Options{Root: root, Cache: disk})
		if err != nil {
			disk.Close()
			return nil, nil, err
		}
		return sn, func() error {
			err := sn.Close()
			disk.Close()
			return err
		}, nil
	})
}

// TestRootInUse: a second snapshotter on the same root fails at once
// (containerd's metadata store would wait forever for the first), and
// gets the root once the first is closed.
func TestRootInUse(t *testing.T) {
	ctx := context.Background()
	disk, err := cache.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer disk.Close()
	root := t.TempDir()
	first, err := New(ctx, Options{Root: root, Cache: disk})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(ctx, Options{Root: root, Cache: disk}); !errors.Is(err, ErrRootInUse) {
		t.Fatalf("second snapshotter on the root: %v, want ErrRootInUse", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	second, err := New(ctx, Options{Root: root, Cache: disk})
	if err != nil {
		t.Fatalf("after the first closed: %v", err)
	}
	second.Close()
}
