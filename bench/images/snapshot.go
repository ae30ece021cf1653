package images

import (
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// stamp is what a build step can change about one entry. The kernel sets
// ctime on every change to an inode (content, mode, owner, link count,
// xattrs) and no program can set it back, so an entry whose stamp is equal
// before and after a step was not touched by it. A file replaced by rename
// (how dpkg installs) has a new inode and so a new stamp.
type stamp struct {
	dev, ino, rdev uint64
	mode           uint32 // st_mode: type and permission bits
	uid, gid       uint32
	nlink          uint64
	size           int64
	mtime, ctime   int64 // nanoseconds
}

func stampOf(st *syscall.Stat_t) stamp {
	return stamp{
		dev: st.Dev, ino: st.Ino, rdev: st.Rdev, mode: st.Mode,
		uid: st.Uid, gid: st.Gid, nlink: st.Nlink, size: st.Size,
		mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano(),
	}
}

func (s stamp) isDir() bool { return s.mode&syscall.S_IFMT == syscall.S_IFDIR }

// snapshot maps every entry under a root (slash-separated, relative, the
// root itself left out) to its stamp.
type snapshot map[string]stamp

// takeSnapshot records the tree under root. It does not cross into other
// file systems' mounts (a chroot step unmounts its /proc before the diff,
// but a leftover mount must not become part of a layer).
func takeSnapshot(root string) (snapshot, error) {
	snap := snapshot{}
	var rootDev uint64
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		st, err := lstat(p)
		if err != nil {
			return err
		}
		if p == root {
			rootDev = st.Dev
			return nil
		}
		if st.Dev != rootDev {
			return fmt.Errorf("%s: %w: another file system is mounted here", p, ErrBuild)
		}
		rel, _ := filepath.Rel(root, p)
		snap[filepath.ToSlash(rel)] = stampOf(st)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", root, err)
	}
	return snap, nil
}

func lstat(p string) (*syscall.Stat_t, error) {
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		return nil, &fs.PathError{Op: "lstat", Path: p, Err: err}
	}
	return &st, nil
}

// change is one tar entry of a diff layer: an entry to write from the
// tree, or a whiteout for a deleted one.
type change struct {
	path     string // the tar name, slash-separated, relative
	whiteout bool
}

// diffTrees lists, in tar order (every directory before what it holds),
// what a layer needs so that before + layer = after:
//
//   - every entry that is new or whose stamp changed;
//   - every directory above such an entry, so the layer states the owner
//     and mode of the directories it fills (as docker's and buildah's
//     diffs do);
//   - a whiteout ".wh.NAME" for every deleted entry whose parent is still
//     a directory; below a deleted or replaced directory nothing more is
//     needed, the whiteout or the replacement hides it all.
//
// A directory replaced by another directory keeps the deleted children's
// whiteouts, since an extractor merges a directory entry into the one
// below.
func diffTrees(before, after snapshot) []change {
	var changed []string
	for p, st := range after {
		if old, ok := before[p]; !ok || old != st {
			changed = append(changed, p)
		}
	}
	emit := map[string]bool{}
	for _, p := range changed {
		emit[p] = true
		for a := path.Dir(p); a != "." && !emit[a]; a = path.Dir(a) {
			emit[a] = true
		}
	}
	var out []change
	for p := range emit {
		out = append(out, change{path: p})
	}
	for p := range before {
		if _, ok := after[p]; ok {
			continue
		}
		parent := path.Dir(p)
		if parent != "." {
			if st, ok := after[parent]; !ok || !st.isDir() {
				continue
			}
		}
		out = append(out, change{path: path.Join(parent, whiteoutPrefix+path.Base(p)), whiteout: true})
	}
	slices.SortFunc(out, func(a, b change) int { return strings.Compare(a.path, b.path) })
	return out
}

// whiteoutPrefix marks an OCI whiteout: ".wh.NAME" deletes NAME from the
// layers below (OCI image-spec, layer.md).
const whiteoutPrefix = ".wh."

// opaqueWhiteout, in a directory, hides everything the layers below hold
// in it.
const opaqueWhiteout = whiteoutPrefix + whiteoutPrefix + ".opq"
