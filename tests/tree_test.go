package tests

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// This file builds layer directories in overlayfs form from a small spec and
// captures a directory tree as comparable text, for the differential suite.

// buildEpoch is the mtime and atime of every built entry. Times are not
// comparable between two runs, so a captured mtime is shown as "epoch" when it
// is still this one (a copy-up kept it) and "now" when an operation of the
// run touched it.
var buildEpoch = time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)

// utimesStamp is what opUtimes sets: a third, exact, comparable time.
var utimesStamp = time.Date(2011, 12, 13, 14, 15, 16, 700, time.UTC)

// ent is one entry of a layer spec. Parents are created implicitly (0755,
// root) unless listed earlier.
type ent struct {
	path   string
	kind   byte // 'f' file, 'd' dir, 'l' symlink, 'h' hard link to target, 'c' char, 'b' block, 'p' fifo, 'w' whiteout, 'o' opaque dir
	data   string
	target string
	perm   uint32
	uid    int
	gid    int
	rdev   uint64
	xattrs map[string]string
}

func mkFile(p, data string) ent       { return ent{path: p, kind: 'f', data: data, perm: 0o644} }
func mkDir(p string) ent              { return ent{path: p, kind: 'd', perm: 0o755} }
func mkOpaque(p string) ent           { return ent{path: p, kind: 'o', perm: 0o755} }
func mkSymlink(p, target string) ent  { return ent{path: p, kind: 'l', target: target} }
func mkHardlink(p, target string) ent { return ent{path: p, kind: 'h', target: target} }
func mkWhiteout(p string) ent         { return ent{path: p, kind: 'w'} }
func mkFifo(p string) ent             { return ent{path: p, kind: 'p', perm: 0o644} }
func mkChar(p string, major, minor uint32) ent {
	return ent{path: p, kind: 'c', perm: 0o600, rdev: unix.Mkdev(major, minor)}
}
func mkBlock(p string, major, minor uint32) ent {
	return ent{path: p, kind: 'b', perm: 0o660, rdev: unix.Mkdev(major, minor)}
}

func (e ent) mode(perm uint32) ent { e.perm = perm; return e }
func (e ent) owner(uid, gid int) ent {
	e.uid, e.gid = uid, gid
	return e
}
func (e ent) xattr(name, value string) ent {
	x := map[string]string{name: value}
	for k, v := range e.xattrs {
		x[k] = v
	}
	e.xattrs = x
	return e
}

// buildTree materialises spec under root (which must exist). Whiteouts are
// char devices 0/0 and opaque dirs carry trusted.overlay.opaque=y, exactly
// what kernel overlayfs writes in an upper.
func buildTree(t testing.TB, root string, spec []ent) {
	t.Helper()
	var made []string
	for _, e := range spec {
		p := filepath.Join(root, e.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := makeEnt(p, root, e); err != nil {
			t.Fatalf("build %s in %s: %v", e.path, root, err)
		}
		made = append(made, p)
	}
	// Times last and deepest first, so that making children does not bump
	// a directory's mtime after it was set.
	var all []string
	filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err == nil && p != root {
			all = append(all, p)
		}
		return nil
	})
	slices.Reverse(all)
	ts := []unix.Timespec{unix.NsecToTimespec(buildEpoch.UnixNano()), unix.NsecToTimespec(buildEpoch.UnixNano())}
	for _, p := range all {
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			t.Fatalf("utimes %s: %v", p, err)
		}
	}
}

func makeEnt(p, root string, e ent) error {
	var err error
	switch e.kind {
	case 'f':
		err = os.WriteFile(p, []byte(e.data), 0o600)
	case 'd', 'o':
		err = os.Mkdir(p, 0o700)
		if e.kind == 'o' && err == nil {
			err = unix.Setxattr(p, "trusted.overlay.opaque", []byte("y"), 0)
		}
	case 'l':
		return errors.Join(os.Symlink(e.target, p), os.Lchown(p, e.uid, e.gid))
	case 'h':
		return os.Link(filepath.Join(root, e.target), p)
	case 'w':
		return unix.Mknod(p, unix.S_IFCHR, 0)
	case 'c':
		err = unix.Mknod(p, unix.S_IFCHR|0o600, int(e.rdev))
	case 'b':
		err = unix.Mknod(p, unix.S_IFBLK|0o600, int(e.rdev))
	case 'p':
		err = unix.Mknod(p, unix.S_IFIFO|0o600, 0)
	default:
		return fmt.Errorf("unknown kind %q", e.kind)
	}
	if err != nil {
		return err
	}
	for k, v := range e.xattrs {
		if err := unix.Lsetxattr(p, k, []byte(v), 0); err != nil {
			return err
		}
	}
	// chown before chmod: chown clears setuid/setgid.
	if err := os.Lchown(p, e.uid, e.gid); err != nil {
		return err
	}
	return unix.Chmod(p, e.perm)
}

// treeView says how to capture a tree.
type treeView int

const (
	// viewMerged: a union mount seen by a user; every xattr counts, and
	// each directory's readdir listing is recorded as well.
	viewMerged treeView = iota
	// viewUpper: a real upper directory; overlayfs's private bookkeeping
	// xattrs are ignored, the opaque marker is not.
	viewUpper
)

// captureTree describes every entry under root as one line keyed by its
// relative path ("." for root); listings are keyed "path/" (merged view).
func captureTree(t testing.TB, root string, view treeView) map[string]string {
	t.Helper()
	out := map[string]string{}
	inodes := map[[2]uint64]string{}
	var walk func(rel string)
	walk = func(rel string) {
		p := filepath.Join(root, rel)
		desc, isDir := describe(p, rel, view, inodes)
		out[rel] = desc
		if !isDir {
			return
		}
		des, err := os.ReadDir(p)
		if err != nil {
			out[rel+"/"] = "readdir error: " + errName(err)
			return
		}
		var names []string
		for _, de := range des {
			names = append(names, de.Name()+":"+typeName(uint32(de.Type().Type())))
		}
		if view == viewMerged {
			out[rel+"/"] = strings.Join(names, " ")
		}
		for _, de := range des {
			walk(filepath.Join(rel, de.Name()))
		}
	}
	walk(".")
	return out
}

// typeName names an os.FileMode type (from readdir) the same way describe
// names a stat mode, so listings and entries read alike.
func typeName(m uint32) string {
	switch os.FileMode(m) {
	case 0:
		return "file"
	case os.ModeDir:
		return "dir"
	case os.ModeSymlink:
		return "symlink"
	case os.ModeDevice | os.ModeCharDevice:
		return "char"
	case os.ModeDevice:
		return "block"
	case os.ModeNamedPipe:
		return "fifo"
	case os.ModeSocket:
		return "socket"
	}
	return fmt.Sprintf("type%o", m)
}

func statType(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "file"
	case unix.S_IFDIR:
		return "dir"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFCHR:
		return "char"
	case unix.S_IFBLK:
		return "block"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFSOCK:
		return "socket"
	}
	return fmt.Sprintf("mode%o", mode)
}

// describe renders one entry. Hard links show as "same-inode-as=" the first
// path seen with that inode, so a broken or kept link is visible without
// comparing raw inode numbers across mounts.
func describe(p, rel string, view treeView, inodes map[[2]uint64]string) (string, bool) {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return "lstat error: " + errName(err), false
	}
	typ := statType(st.Mode)
	if view == viewUpper && typ == "char" && st.Rdev == 0 {
		// overlayfs hard-links all whiteouts to one shared inode and makes
		// them mode 0; only their presence means anything.
		return "whiteout xattrs=" + xattrString(p, view), false
	}
	parts := []string{typ, fmt.Sprintf("perm=%04o", st.Mode&0o7777),
		fmt.Sprintf("uid=%d", st.Uid), fmt.Sprintf("gid=%d", st.Gid), "mtime=" + timeClass(st.Mtim)}
	switch typ {
	case "file":
		parts = append(parts, fmt.Sprintf("size=%d", st.Size), "sha256="+fileHash(p))
	case "symlink":
		target, err := os.Readlink(p)
		if err != nil {
			target = "error " + errName(err)
		}
		parts = append(parts, fmt.Sprintf("size=%d", st.Size), "target="+target)
	case "char", "block":
		parts = append(parts, fmt.Sprintf("rdev=%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev)))
	}
	if typ != "dir" {
		parts = append(parts, fmt.Sprintf("nlink=%d", st.Nlink))
		key := [2]uint64{st.Dev, st.Ino}
		if first, ok := inodes[key]; ok {
			parts = append(parts, "same-inode-as="+first)
		} else {
			inodes[key] = rel
		}
	}
	parts = append(parts, "xattrs="+xattrString(p, view))
	return strings.Join(parts, " "), typ == "dir"
}

func timeClass(ts unix.Timespec) string {
	t := time.Unix(ts.Unix())
	switch {
	case t.Equal(buildEpoch):
		return "epoch"
	case time.Since(t).Abs() < 10*time.Minute:
		return "now"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func fileHash(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return "read-error:" + errName(err)
	}
	return fmt.Sprintf("%x", sha256.Sum256(b))[:16]
}

// overlayPrivate reports xattrs overlayfs keeps for itself in an upper
// (origin, impure, redirect...), which strata need not write.
func overlayPrivate(name string) bool {
	return strings.HasPrefix(name, "trusted.overlay.") && name != "trusted.overlay.opaque"
}

func xattrString(p string, view treeView) string {
	names, err := listXattrs(p)
	if err != nil {
		return "error:" + errName(err)
	}
	var kv []string
	for _, n := range names {
		if view == viewUpper && overlayPrivate(n) {
			continue
		}
		v, err := getXattr(p, n)
		if err != nil {
			kv = append(kv, n+"=error:"+errName(err))
			continue
		}
		kv = append(kv, fmt.Sprintf("%s=%q", n, v))
	}
	return "{" + strings.Join(kv, ",") + "}"
}

func listXattrs(p string) ([]string, error) {
	sz, err := unix.Llistxattr(p, nil)
	if err != nil || sz == 0 {
		return nil, err
	}
	buf := make([]byte, sz)
	sz, err = unix.Llistxattr(p, buf)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, n := range strings.Split(string(buf[:sz]), "\x00") {
		if n != "" {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names, nil
}

func getXattr(p, name string) (string, error) {
	sz, err := unix.Lgetxattr(p, name, nil)
	if err != nil {
		return "", err
	}
	buf := make([]byte, sz)
	sz, err = unix.Lgetxattr(p, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:sz]), nil
}

// errName renders an error as its errno name when it has one, so results
// compare across filesystems whatever the path in the message.
func errName(err error) string {
	if err == nil {
		return "ok"
	}
	var step stepErr
	if errors.As(err, &step) {
		return step.Error()
	}
	var errno unix.Errno
	if errors.As(err, &errno) {
		if n := unix.ErrnoName(errno); n != "" {
			return n
		}
		return fmt.Sprintf("errno%d", int(errno))
	}
	return err.Error()
}

// diffTrees returns "path: a != b" lines for every path whose description
// differs, sorted, at most limit of them plus a count of the rest.
func diffTrees(a, b map[string]string, aName, bName string, limit int) []string {
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	var diffs []string
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		va, oka := a[k]
		vb, okb := b[k]
		if oka && okb && va == vb {
			continue
		}
		if !oka {
			va = "(absent)"
		}
		if !okb {
			vb = "(absent)"
		}
		diffs = append(diffs, fmt.Sprintf("%s\n      %-8s %s\n      %-8s %s", k, aName+":", va, bName+":", vb))
	}
	if len(diffs) > limit {
		n := len(diffs) - limit
		diffs = append(diffs[:limit], fmt.Sprintf("... and %d more differing paths", n))
	}
	return diffs
}
