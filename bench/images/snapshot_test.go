package images

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func write(t *testing.T, root, rel, content string) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func snap(t *testing.T, root string) snapshot {
	t.Helper()
	s, err := takeSnapshot(root)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestDiffTrees makes one change of each kind to a real tree and checks
// the diff's entries, then that base + diff layer = the changed tree.
func TestDiffTrees(t *testing.T) {
	root := t.TempDir()
	for _, f := range []string{"keep/a", "keep/deep/b", "mod/c", "gone/d", "gone/sub/e", "swap/f", "dir/file", "link/target", "perm/g"} {
		write(t, root, f, f)
	}
	if err := os.Symlink("target", filepath.Join(root, "link/sym")); err != nil {
		t.Fatal(err)
	}
	before := snap(t, root)
	base := filepath.Join(t.TempDir(), "base.tar")
	if _, err := writeLayer(context.Background(), root, diffTrees(snapshot{}, before), base); err != nil {
		t.Fatal(err)
	}

	write(t, root, "mod/c", "changed in place")         // content: mod/c and its parent dir
	must(t, os.RemoveAll(filepath.Join(root, "gone")))  // one whiteout for the whole dir
	must(t, os.RemoveAll(filepath.Join(root, "swap")))  // dir -> file: no whiteout below it
	write(t, root, "swap", "now a file")                //
	must(t, os.Remove(filepath.Join(root, "dir/file"))) // file whiteout
	must(t, os.Link(filepath.Join(root, "link/target"), filepath.Join(root, "link/hard")))
	must(t, os.Chmod(filepath.Join(root, "perm/g"), 0o600)) // metadata only
	write(t, root, "new/h", "new")
	after := snap(t, root)

	var got []string
	for _, c := range diffTrees(before, after) {
		got = append(got, c.path)
	}
	want := []string{".wh.gone", "dir", "dir/.wh.file", "link", "link/hard", "link/target",
		"mod", "mod/c", "new", "new/h", "perm", "perm/g", "swap"}
	if !slices.Equal(got, want) {
		t.Errorf("diff:\n got  %q\n want %q", got, want)
	}

	layerTar := filepath.Join(t.TempDir(), "layer.tar")
	info, err := writeLayer(context.Background(), root, diffTrees(before, after), layerTar)
	if err != nil {
		t.Fatal(err)
	}
	if info.Whiteouts != 2 || info.Entries != len(want) {
		t.Errorf("layer info %+v", info)
	}
	out := t.TempDir()
	for _, p := range []string{base, layerTar} {
		extractFile(t, out, p)
	}
	compareTrees(t, "base+layer", readTree(t, root, nil, true), readTree(t, out, nil, true))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func extractFile(t *testing.T, root, tarPath string) {
	t.Helper()
	f, err := os.Open(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := Extract(context.Background(), root, f); err != nil {
		t.Fatal(err)
	}
}

// TestSnapshotRefusesMounts: a file system mounted inside the rootfs
// (a leftover /proc) must not become part of a layer.
func TestSnapshotRefusesMounts(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	mnt := filepath.Join(root, "proc")
	must(t, os.Mkdir(mnt, 0o755))
	must(t, mountTmpfs(mnt))
	defer unmount(t, mnt)
	if _, err := takeSnapshot(root); err == nil {
		t.Fatal("takeSnapshot walked into a mount")
	}
}
