package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// requireRoot fails (not skips) a test that needs root: the images hold
// device nodes and files of other owners.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root (device nodes, chown, chroot)")
	}
}

// quickOnce builds the quick image once for the package's tests.
var quickOnce struct {
	sync.Once
	dir string
	set *Set
	err error
}

func quickSet(t *testing.T) *Image {
	t.Helper()
	requireRoot(t)
	quickOnce.Do(func() {
		quickOnce.dir, quickOnce.err = os.MkdirTemp("", "strata-images-test-")
		if quickOnce.err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			quickOnce.set, quickOnce.err = BuildQuick(ctx, Options{CacheDir: quickOnce.dir})
		}
	})
	if quickOnce.err != nil {
		t.Fatalf("BuildQuick: %v", quickOnce.err)
	}
	im := quickOnce.set.Image("quick")
	if im == nil {
		t.Fatal("BuildQuick returned no image called quick")
	}
	return im
}

// entry is what a comparison of two trees looks at.
type entry struct {
	typ      uint32
	perm     uint32
	uid, gid uint32
	size     int64
	mtime    int64 // seconds: layers keep no more
	rdev     uint64
	link     string
	sum      string
	xattrs   string
	linkPeer string // first path (sorted) of the same inode, for hard links
}

func (e entry) String() string {
	return fmt.Sprintf("type %o perm %o owner %d:%d size %d mtime %d rdev %d link %q sum %.12s xattrs %q peer %q",
		e.typ, e.perm, e.uid, e.gid, e.size, e.mtime, e.rdev, e.link, e.sum, e.xattrs, e.linkPeer)
}

// readTree records every entry under root except the names in skip.
// withSums hashes every regular file; otherwise only every 5th file and
// those under app/, a spot check.
func readTree(t *testing.T, root string, skip map[string]bool, withSums bool) map[string]entry {
	t.Helper()
	out := map[string]entry{}
	inodes := map[[2]uint64]string{}
	var paths []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if skip[rel] {
			return nil
		}
		paths = append(paths, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(paths)
	for i, rel := range paths {
		p := filepath.Join(root, rel)
		st, err := lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		e := entry{typ: st.Mode & syscall.S_IFMT, perm: st.Mode & 0o7777, uid: st.Uid, gid: st.Gid,
			mtime: st.Mtim.Sec, rdev: st.Rdev}
		x, err := readXattrs(p)
		if err != nil {
			t.Fatal(err)
		}
		e.xattrs = fmt.Sprint(x)
		switch e.typ {
		case syscall.S_IFLNK:
			e.link, _ = os.Readlink(p)
		case syscall.S_IFREG:
			e.size = st.Size
			key := [2]uint64{st.Dev, st.Ino}
			if first, ok := inodes[key]; ok {
				e.linkPeer = first
			} else {
				inodes[key] = rel
			}
			if withSums || i%5 == 0 || strings.HasPrefix(rel, "app/") {
				e.sum = fileSum(t, p)
			}
		}
		out[rel] = e
	}
	return out
}

func fileSum(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// compareTrees fails the test for each entry that differs, is missing or
// is extra in got.
func compareTrees(t *testing.T, what string, want, got map[string]entry) {
	t.Helper()
	bad := 0
	for p, w := range want {
		g, ok := got[p]
		if !ok {
			t.Errorf("%s: %s missing", what, p)
			bad++
		} else if w != g {
			t.Errorf("%s: %s differs:\n  want %v\n  got  %v", what, p, w, g)
			bad++
		}
		if bad > 20 {
			t.Fatalf("%s: too many differences", what)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%s: %s is extra", what, p)
		}
	}
}

// chrootOutput runs argv chrooted into root and returns its output.
func chrootOutput(t *testing.T, root string, argv ...string) string {
	t.Helper()
	cmd := exec.Command("chroot", append([]string{root}, argv...)...)
	cmd.Env = chrootEnv
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("chroot %s %v: %v: %s", root, argv, err, out)
	}
	return string(out)
}
