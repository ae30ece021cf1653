package tests

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/mount"
	"github.com/containerd/containerd/pkg/snapshotters"
	"github.com/containerd/containerd/snapshots"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	"github.com/stratafs/strata/cache"
	"github.com/stratafs/strata/lazy"
	"github.com/stratafs/strata/snapshotter"
	"github.com/stratafs/strata/status"
	"github.com/stratafs/strata/unionfs"
	"golang.org/x/sys/unix"
)

// The snapshotter package in this process, driven as containerd's unpacker
// and runtime drive it (the end-to-end test with containerd itself is
// snapshotter_test.go): layers prepared with the pull's labels become
// remote snapshots without a byte of their files fetched, and a
// container's mounts show the image exactly as kernel overlayfs over the
// extracted layers does.

// snapImage is an image pushed for the snapshotter, as its pull labels
// name it.
type snapImage struct {
	ref, manifest string
	layers        []string // layer digests, base first
	chain         []string // chain IDs, base first
}

func pushSnapImage(t *testing.T, ref string, img v1.Image) snapImage {
	t.Helper()
	pushImage(t, ref, img)
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	si := snapImage{ref: ref, manifest: d.String()}
	var diffIDs []digest.Digest
	for _, l := range ls {
		ld, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		di, err := l.DiffID()
		if err != nil {
			t.Fatal(err)
		}
		si.layers = append(si.layers, ld.String())
		diffIDs = append(diffIDs, digest.Digest(di.String()))
	}
	for _, c := range identity.ChainIDs(diffIDs) {
		si.chain = append(si.chain, c.String())
	}
	return si
}

// labels are what containerd's unpacker passes to layer i's Prepare when
// the client pulls with snapshotters.AppendInfoHandlerWrapper.
func (si snapImage) labels(i int) snapshots.Opt {
	return snapshots.WithLabels(map[string]string{
		"containerd.io/snapshot.ref":               si.chain[i],
		snapshotters.TargetRefLabel:                si.ref,
		snapshotters.TargetManifestDigestLabel:     si.manifest,
		snapshotters.TargetLayerDigestLabel:        si.layers[i],
		snapshotters.TargetImageLayersLabel:        strings.Join(si.layers[i:], ","),
		"containerd.io/gc.root":                    "strata-test",
		"containerd.io/snapshot/strata-test/dummy": "kept",
	})
}

// unpackRemote prepares layers 0..n-1 as containerd's unpacker would and
// checks that each is committed at once, remote.
func unpackRemote(t *testing.T, ctx context.Context, sn *snapshotter.Snapshotter, si snapImage, n int) {
	t.Helper()
	parent := ""
	for i := range n {
		_, err := sn.Prepare(ctx, fmt.Sprintf("extract-%d %s", i, si.chain[i]), parent, si.labels(i))
		if !errdefs.IsAlreadyExists(err) {
			t.Fatalf("Prepare of layer %d: %v, want ErrAlreadyExists (a remote snapshot)", i, err)
		}
		info, err := sn.Stat(ctx, si.chain[i])
		if err != nil || info.Kind != snapshots.KindCommitted || info.Parent != parent {
			t.Fatalf("layer %d's snapshot: %+v, %v; want committed on %q", i, info, err, parent)
		}
		if info.Labels["containerd.io/snapshot/strata-test/dummy"] != "kept" {
			t.Errorf("layer %d's snapshot lost the pull's labels: %v", i, info.Labels)
		}
		parent = si.chain[i]
	}
}

// mountSnapshot mounts ms on a new directory until the test ends.
func mountSnapshot(t *testing.T, ms []mount.Mount) string {
	t.Helper()
	dir := t.TempDir()
	if err := mount.All(ms, dir); err != nil {
		t.Fatalf("mount %+v: %v", ms, err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

func openSnapshotter(t *testing.T, ctx context.Context, root, cacheDir string) *snapshotter.Snapshotter {
	t.Helper()
	disk, err := cache.Open(cacheDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { disk.Close() })
	sn, err := snapshotter.New(ctx, snapshotter.Options{Root: root, Cache: disk})
	if err != nil {
		t.Fatal(err)
	}
	// A test that fails before it closes the snapshotter leaves no mount
	// behind (their server is this process).
	t.Cleanup(func() {
		left, _ := unionfs.MountsUnder(root)
		for _, m := range slices.Backward(left) {
			unix.Unmount(m, unix.MNT_DETACH)
		}
	})
	return sn
}

// TestSnapshotterRemote: pull, a container on the image, a view of a
// layer in the middle, a restart of the snapshotter, and removal.
func TestSnapshotterRemote(t *testing.T) {
	fx := registryFixture(t)
	counter := &countingHandler{only: "/blobs/"}
	host := startRegistry(t, func(next http.Handler) http.Handler { counter.next = next; return counter })
	si := pushSnapImage(t, host+"/strata/snap:zstd", lazyImage(t, fx.blobs[fmtZstd]))
	ctx := context.Background()
	root, cacheDir := t.TempDir(), t.TempDir()
	t.Setenv("STRATA_RUNTIME_DIR", t.TempDir()) // the image mounts' status files
	sn := openSnapshotter(t, ctx, root, cacheDir)

	before := counter.n.Load()
	unpackRemote(t, ctx, sn, si, 3)
	// The config, and each layer's TOC (one request each, with the
	// zstd:chunked position annotation): no file's bytes.
	if n := counter.n.Load() - before; n > 4 {
		t.Errorf("the pull made %d blob requests, want at most 4 (config and TOCs)", n)
	}
	// A second unpack of the same image finds every layer there.
	if _, err := sn.Stat(ctx, si.chain[2]); err != nil {
		t.Fatal(err)
	}

	// With an upper, as the container has (the root takes its times).
	want := captureTree(t, mountOverlay(t, extractLayers(t, fx.layers, formOverlay), mkdirs(t, t.TempDir(), "upper")), viewMerged)
	ms, err := sn.Prepare(ctx, "container", si.chain[2])
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].Type != "overlay" || strings.Count(optionValue(ms[0].Options, "lowerdir="), ":") != 0 {
		t.Fatalf("container mounts %+v: want overlayfs on the one merged image directory", ms)
	}
	ctr := mountSnapshot(t, ms)
	got := captureTree(t, ctr, viewMerged)
	checkImageTree(t, "container on the snapshotter", got, fx)
	compareTreesNamed(t, "container vs kernel overlayfs over the extracted layers", "overlayfs", "snapshotter", want, got)
	readWant(t, filepath.Join(ctr, "usr/lib/big"), fx.baseFile("usr/lib/big"))
	// strata stat on the container's root shows the image mount's layers.
	st := waitStat(t, ctr, "the bytes read", func(st status.Mount) bool {
		return len(st.Layers) == 3 && sum(st.Layers, func(l status.Layer) int64 { return l.BytesServed }) >= int64(len(fx.baseFile("usr/lib/big")))
	})
	if sum(st.Layers, func(l status.Layer) int64 { return l.BytesFetched }) == 0 || st.Cache == nil || st.Cache.Dir != cacheDir {
		t.Errorf("strata stat of the container: %+v, want bytes fetched and the cache", st)
	}
	if err := os.WriteFile(filepath.Join(ctr, "etc/written"), []byte("by the container"), 0o644); err != nil {
		t.Fatal(err)
	}

	// A read-only view of the middle layer: layers 0 and 1 only, and not
	// the container's write.
	vms, err := sn.View(ctx, "view-middle", si.chain[1])
	if err != nil {
		t.Fatal(err)
	}
	if len(vms) != 1 || vms[0].Type != "bind" {
		t.Fatalf("view mounts %+v: want a bind mount of the merged directory", vms)
	}
	view := mountSnapshot(t, vms)
	compareTreesNamed(t, "view of layer 1 vs overlayfs over layers 0-1", "overlayfs", "view",
		captureTree(t, mountOverlay(t, extractLayers(t, fx.layers[:2], formOverlay), ""), viewMerged),
		captureTree(t, view, viewMerged))
	if err := os.WriteFile(filepath.Join(view, "etc/x"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("write into a view: %v, want EROFS", err)
	}
	if _, err := os.Stat(filepath.Join(root, "snapshots")); err != nil {
		t.Fatal(err)
	}
	unix.Unmount(view, 0)
	unix.Unmount(ctr, 0)

	// A restart: the mounts go with the process, and a new one serves the
	// same snapshots, from the cache, with no registry request.
	if err := sn.Close(); err != nil {
		t.Fatal(err)
	}
	if left, err := unionfs.MountsUnder(root); err != nil || len(left) != 0 {
		t.Fatalf("mounts left under the root after Close: %v %v", left, err)
	}
	before = counter.n.Load()
	sn = openSnapshotter(t, ctx, root, cacheDir)
	defer sn.Close()
	ms, err = sn.Mounts(ctx, "container")
	if err != nil {
		t.Fatal(err)
	}
	ctr = mountSnapshot(t, ms)
	readWant(t, filepath.Join(ctr, "etc/written"), []byte("by the container"))
	readWant(t, filepath.Join(ctr, "usr/lib/big"), fx.baseFile("usr/lib/big"))
	if n := counter.n.Load() - before; n != 0 {
		t.Errorf("after a restart, reading what was read before made %d blob requests, want 0", n)
	}
	unix.Unmount(ctr, 0)

	// A remote snapshot with a child stays, and so does its mount: the
	// container's overlay reads through it.
	ctr = mountSnapshot(t, ms)
	if err := sn.Remove(ctx, si.chain[2]); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("remove %s under the container: %v, want ErrFailedPrecondition", si.chain[2], err)
	}
	if left, err := unionfs.MountsUnder(root); err != nil || len(left) != 1 {
		t.Errorf("mounts under the root after the refused removal: %v %v, want the image's one", left, err)
	}
	readWant(t, filepath.Join(ctr, "usr/lib/big"), fx.baseFile("usr/lib/big"))
	unix.Unmount(ctr, 0)

	// Removal, top down, as containerd's garbage collector does; the
	// remote snapshots' mounts go with them.
	for _, key := range []string{"container", "view-middle", si.chain[2], si.chain[1], si.chain[0]} {
		if err := sn.Remove(ctx, key); err != nil {
			t.Fatalf("remove %s: %v", key, err)
		}
	}
	if left, err := unionfs.MountsUnder(root); err != nil || len(left) != 0 {
		t.Errorf("mounts left under the root after every snapshot was removed: %v %v", left, err)
	}
	if ents, err := os.ReadDir(os.Getenv("STRATA_RUNTIME_DIR")); err != nil || len(ents) != 0 {
		t.Errorf("status files left after every snapshot was removed: %v %v", ents, err)
	}
}

// TestSnapshotterLocalOnRemote: a layer that is not lazily loadable (gzip,
// no TOC) on remote ones is containerd's to unpack, in an ordinary
// snapshot whose mounts list the remote snapshot below it once.
func TestSnapshotterLocalOnRemote(t *testing.T) {
	fx := registryFixture(t)
	host := startRegistry(t, nil)
	blobs := fx.blobs[fmtZstd]
	layers := []v1.Layer{blobLayer{blobs[0]}, blobLayer{blobs[1]}, plainLayer(t, fx.tars[2])}
	img := imageOf(t, layers, []map[string]string{blobs[0].annotations, blobs[1].annotations, nil})
	si := pushSnapImage(t, host+"/strata/mixed:1", img)
	ctx := context.Background()
	root := t.TempDir()
	sn := openSnapshotter(t, ctx, root, t.TempDir())
	defer sn.Close()

	unpackRemote(t, ctx, sn, si, 2)
	key := "extract-2 " + si.chain[2]
	ms, err := sn.Prepare(ctx, key, si.chain[1], si.labels(2))
	if err != nil {
		t.Fatalf("Prepare of the gzip layer: %v, want mounts to unpack it into", err)
	}
	if len(ms) != 1 || ms[0].Type != "overlay" || strings.Contains(optionValue(ms[0].Options, "lowerdir="), ":") {
		t.Fatalf("unpack mounts %+v: want overlayfs on the merged directory of layers 0-1", ms)
	}
	// Unpack a stand-in for the layer: one file.
	dir := mountSnapshot(t, ms)
	if err := os.WriteFile(filepath.Join(dir, "etc/unpacked"), []byte("local"), 0o644); err != nil {
		t.Fatal(err)
	}
	unix.Unmount(dir, 0)
	if err := sn.Commit(ctx, si.chain[2], key); err != nil {
		t.Fatal(err)
	}
	ms, err = sn.Prepare(ctx, "container", si.chain[2])
	if err != nil {
		t.Fatal(err)
	}
	if lowers := strings.Split(optionValue(ms[0].Options, "lowerdir="), ":"); len(lowers) != 2 {
		t.Fatalf("container mounts %+v: want two lower directories, the local layer's and the merged one", ms)
	}
	ctr := mountSnapshot(t, ms)
	readWant(t, filepath.Join(ctr, "etc/unpacked"), []byte("local"))
	readWant(t, filepath.Join(ctr, "etc/config"), []byte("version=2\n")) // from layer 1
	if _, err := os.Stat(filepath.Join(ctr, "etc/removed")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("etc/removed, whited out in layer 1: %v, want ENOENT", err)
	}
	unix.Unmount(ctr, 0)
}

// optionValue is the value of the mount option that starts with prefix.
func optionValue(opts []string, prefix string) string {
	for _, o := range opts {
		if v, ok := strings.CutPrefix(o, prefix); ok {
			return v
		}
	}
	return ""
}

// TestSnapshotterBadTOC: a layer whose TOC does not match the manifest's
// digest is never served: the mount of the image fails, naming the
// mismatch, and a later attempt fails the same way.
func TestSnapshotterBadTOC(t *testing.T) {
	fx := registryFixture(t)
	host := startRegistry(t, nil)
	blobs := append([]lazyBlob(nil), fx.blobs[fmtZstd]...)
	bad := blobs[1]
	bad.annotations = maps.Clone(bad.annotations)
	bad.annotations[annotZstdChecksum] = digest.FromString("not this TOC").String()
	blobs[1] = bad
	si := pushSnapImage(t, host+"/strata/badtoc:1", lazyImage(t, blobs))
	ctx := context.Background()
	sn := openSnapshotter(t, ctx, t.TempDir(), t.TempDir())
	defer sn.Close()
	unpackRemote(t, ctx, sn, si, 3)
	for range 2 {
		key := fmt.Sprintf("container-%d", time.Now().UnixNano())
		_, err := sn.Prepare(ctx, key, si.chain[2])
		if !errors.Is(err, lazy.ErrTOCDigest) {
			t.Fatalf("a container on an image with a bad TOC: %v, want lazy.ErrTOCDigest", err)
		}
		if _, err := sn.Stat(ctx, key); !errdefs.IsNotFound(err) {
			t.Errorf("the failed Prepare left its snapshot: Stat: %v", err)
		}
	}
}
