package unionfs

import (
	"context"
	"errors"
	"os"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// owner returns who a new entry in directory n belongs to: the caller, with
// the directory's group instead when the directory is setgid. setgid also
// reports whether the directory is setgid, which a new subdirectory inherits.
func (n *node) owner(ctx context.Context) (uid, gid int, setgid bool, errno syscall.Errno) {
	caller, ok := fuse.FromContext(ctx)
	if !ok {
		return 0, 0, false, syscall.EIO
	}
	uid, gid = int(caller.Uid), int(caller.Gid)
	var attr fuse.Attr
	if errno := n.getattr(ctx, &attr); errno != 0 {
		return 0, 0, false, errno
	}
	if attr.Mode&syscall.S_ISGID != 0 {
		gid, setgid = int(attr.Gid), true
	}
	return uid, gid, setgid, 0
}

// newEntry is how a creating operation builds its entry under a name (the
// final one, or a temporary one renamed over a whiteout afterwards).
type newEntry struct {
	isDir bool
	make  func(pfd int, name string) error
	// mode is applied after chown (which may clear setuid/setgid); 0 for a
	// symlink, whose mode is not its own.
	mode uint32
}

// create makes a new entry called name in the directory n and returns its
// node. Over a whiteout the entry is built under a temporary name and moved
// into place in one step (a directory made there is opaque, as overlayfs
// makes it).
func (n *node) create(ctx context.Context, name string, ne newEntry, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if n.u.upper == nil {
		return nil, syscall.EROFS
	}
	if isTmpName(name) {
		return nil, syscall.EPERM // reserved for entries strata is building
	}
	uid, gid, setgid, errno := n.owner(ctx)
	if errno != 0 {
		return nil, errno
	}
	if ne.isDir && setgid {
		ne.mode |= syscall.S_ISGID
	}
	n.u.renameMu.RLock()
	defer n.u.renameMu.RUnlock()
	if err := n.copyUp(ctx, false); err != nil {
		return nil, n.errno("create: copy-up", name, err)
	}
	cs, err := n.resolve(ctx, name)
	if err != nil {
		return nil, n.errno("create", name, err)
	}
	if cs.exists() {
		return nil, syscall.EEXIST
	}
	err = n.withUpperDir(func(pfd int) error {
		target := name
		if cs.whiteout {
			target = tmpName()
		}
		if err := ne.make(pfd, target); err != nil {
			return err
		}
		if err := finishNew(pfd, target, uid, gid, ne); err != nil {
			removeAt(pfd, target, ne.isDir)
			return err
		}
		if cs.whiteout {
			return replaceWhiteout(pfd, target, name, ne.isDir)
		}
		return nil
	})
	if err != nil {
		return nil, n.errno("create", name, err)
	}
	return n.lookupNew(ctx, name, out)
}

// finishNew gives a new upper entry its owner and mode, and marks a
// directory built to replace a whiteout opaque.
func finishNew(pfd int, name string, uid, gid int, ne newEntry) error {
	if err := unix.Fchownat(pfd, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	if ne.mode != 0 {
		if err := unix.Fchmodat(pfd, name, ne.mode&07777, 0); err != nil {
			return err
		}
	}
	if ne.isDir && isTmpName(name) {
		return setOpaque(pfd, name)
	}
	return nil
}

// replaceWhiteout moves the finished entry tmp over the whiteout name. A
// directory cannot be renamed over a non-directory, so it is exchanged
// with the whiteout, which is then removed.
func replaceWhiteout(pfd int, tmp, name string, isDir bool) error {
	if !isDir {
		return unix.Renameat(pfd, tmp, pfd, name)
	}
	if err := unix.Renameat2(pfd, tmp, pfd, name, unix.RENAME_EXCHANGE); err != nil {
		removeAt(pfd, tmp, true)
		return err
	}
	return unix.Unlinkat(pfd, tmp, 0)
}

// lookupNew returns the node of an entry just made in the upper directory.
func (n *node) lookupNew(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	cs, err := n.resolve(ctx, name)
	if err != nil {
		return nil, n.errno("lookup", name, err)
	}
	if !cs.hasUpper {
		return nil, n.errno("lookup", name, errors.New("entry vanished after it was made"))
	}
	child, stable := n.newChild(&cs)
	ch := n.NewInode(ctx, child, stable)
	ch.Operations().(*node).attrFromState(&cs, &out.Attr)
	return ch, 0
}

var _ = (fs.NodeMkdirer)((*node)(nil))

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return n.create(ctx, name, newEntry{isDir: true, mode: mode & 07777, make: func(pfd int, target string) error {
		return unix.Mkdirat(pfd, target, 0o700)
	}}, out)
}

var _ = (fs.NodeMknoder)((*node)(nil))

func (n *node) Mknod(ctx context.Context, name string, mode, dev uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if mode&syscall.S_IFMT == syscall.S_IFCHR && dev == 0 {
		// In the upper directory that is a whiteout: it would delete, not create.
		return nil, syscall.EPERM
	}
	return n.create(ctx, name, newEntry{mode: mode & 07777, make: func(pfd int, target string) error {
		return unix.Mknodat(pfd, target, mode&syscall.S_IFMT|0o600, int(dev))
	}}, out)
}

var _ = (fs.NodeSymlinker)((*node)(nil))

func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return n.create(ctx, name, newEntry{make: func(pfd int, tname string) error {
		return unix.Symlinkat(target, pfd, tname)
	}}, out)
}

var _ = (fs.NodeCreater)((*node)(nil))

func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	var f *os.File
	ch, errno := n.create(ctx, name, newEntry{mode: mode & 07777, make: func(pfd int, target string) error {
		const strip = syscall.O_TRUNC | syscall.O_NOCTTY
		fd, err := unix.Openat(pfd, target, int(flags)&^strip|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return err
		}
		f = os.NewFile(uintptr(fd), name)
		return nil
	}}, out)
	if errno != 0 {
		if f != nil {
			f.Close()
		}
		return nil, nil, 0, errno
	}
	c := ch.Operations().(*node)
	c.mu.Lock()
	iom := c.decideIO(true)
	c.mu.Unlock()
	return ch, newHandle(f, iom), openFlags(iom, true), 0
}

var _ = (fs.NodeLinker)((*node)(nil))

func (n *node) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if n.u.upper == nil {
		return nil, syscall.EROFS
	}
	if isTmpName(name) {
		return nil, syscall.EPERM
	}
	t := target.(*node)
	n.u.renameMu.RLock()
	defer n.u.renameMu.RUnlock()
	if err := t.copyUp(ctx, false); err != nil {
		return nil, n.errno("link: copy-up", name, err)
	}
	if err := n.copyUp(ctx, false); err != nil {
		return nil, n.errno("link: copy-up", name, err)
	}
	cs, err := n.resolve(ctx, name)
	if err != nil {
		return nil, n.errno("link", name, err)
	}
	if cs.exists() {
		return nil, syscall.EEXIST
	}
	err = n.withUpperDir(func(pfd int) error {
		dst := name
		if cs.whiteout {
			dst = tmpName()
		}
		err := t.withUpperParent(func(tpfd int, tname string) error {
			return unix.Linkat(tpfd, tname, pfd, dst, 0)
		})
		if err != nil || !cs.whiteout {
			return err
		}
		return replaceWhiteout(pfd, dst, name, false)
	})
	if err != nil {
		return nil, n.errno("link", name, err)
	}
	if errno := t.getattr(ctx, &out.Attr); errno != 0 {
		return nil, errno
	}
	return t.EmbeddedInode(), 0
}

var _ = (fs.NodeUnlinker)((*node)(nil))

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	return n.remove(ctx, name, false)
}

var _ = (fs.NodeRmdirer)((*node)(nil))

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	return n.remove(ctx, name, true)
}

// remove deletes name from the merged tree: the upper entry goes, and a
// whiteout takes its place when a lower entry would show through.
func (n *node) remove(ctx context.Context, name string, isDir bool) syscall.Errno {
	if n.u.upper == nil {
		return syscall.EROFS
	}
	n.u.renameMu.RLock()
	defer n.u.renameMu.RUnlock()
	cs, err := n.resolve(ctx, name)
	if err != nil {
		return n.errno("remove", name, err)
	}
	if !cs.exists() {
		return syscall.ENOENT
	}
	switch {
	case isDir && !cs.isDir():
		return syscall.ENOTDIR
	case !isDir && cs.isDir():
		return syscall.EISDIR
	}
	if isDir {
		if errno := n.checkEmpty(ctx, name); errno != 0 {
			return errno
		}
	}
	if err := n.copyUp(ctx, false); err != nil {
		return n.errno("remove: copy-up", name, err)
	}
	err = n.withUpperDir(func(pfd int) error {
		if !cs.hasUpper {
			return mkWhiteout(pfd, name)
		}
		if isDir {
			if err := clearWhiteouts(pfd, name); err != nil {
				return err
			}
		}
		if cs.lowerVisible() {
			return replaceWithWhiteout(pfd, name, isDir)
		}
		flag := 0
		if isDir {
			flag = unix.AT_REMOVEDIR
		}
		return unix.Unlinkat(pfd, name, flag)
	})
	if err != nil {
		return n.errno("remove", name, err)
	}
	if cs.hasUpper && (isDir || cs.up.st.Nlink <= 1) {
		n.u.inos.forget(inoKey{upperLayer, cs.up.st.Ino})
	}
	return 0
}

// checkEmpty answers ENOTEMPTY unless the directory name in n shows no
// entries in the merged view (it may still hold whiteouts).
func (n *node) checkEmpty(ctx context.Context, name string) syscall.Errno {
	ch := n.GetChild(name)
	if ch == nil {
		return syscall.ENOENT // the kernel looks a name up before removing it
	}
	ents, err := ch.Operations().(*node).list(ctx)
	if err != nil {
		return n.errno("list", name, err)
	}
	if len(ents) > 0 {
		return syscall.ENOTEMPTY
	}
	return 0
}

var _ = (fs.NodeSetattrer)((*node)(nil))

func (n *node) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if n.u.upper == nil {
		return syscall.EROFS
	}
	size, hasSize := in.GetSize()
	n.u.renameMu.RLock()
	err := n.copyUp(ctx, hasSize && size == 0)
	if err == nil {
		err = n.withUpperParent(func(pfd int, name string) error {
			return applySetattr(pfd, name, asFile(fh), in)
		})
	}
	n.u.renameMu.RUnlock()
	if err != nil {
		return n.errno("setattr", "", err)
	}
	if errno := n.Getattr(ctx, fh, out); errno != 0 {
		return errno
	}
	// go-fuse leaves a SETATTR reply's timeout at zero, which would cost a
	// GETATTR after every chmod, chown or utimes.
	out.SetTimeout(n.u.opts.timeout)
	return 0
}

// applySetattr makes the changes of one SETATTR to name in pfd, or to the
// open file f when the kernel gave one (it may be unlinked).
func applySetattr(pfd int, name string, f *file, in *fuse.SetAttrIn) error {
	uid, hasUID := in.GetUID()
	gid, hasGID := in.GetGID()
	if hasUID || hasGID {
		u, g := -1, -1
		if hasUID {
			u = int(uid)
		}
		if hasGID {
			g = int(gid)
		}
		if err := unix.Fchownat(pfd, name, u, g, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
	}
	if mode, ok := in.GetMode(); ok {
		if err := unix.Fchmodat(pfd, name, mode&07777, 0); err != nil {
			return err
		}
	}
	if size, ok := in.GetSize(); ok {
		if err := truncate(pfd, name, f, int64(size)); err != nil {
			return err
		}
	}
	return setTimes(pfd, name, in)
}

func truncate(pfd int, name string, f *file, size int64) error {
	if f != nil {
		return unix.Ftruncate(f.fd(), size)
	}
	fd, err := unix.Openat(pfd, name, unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Ftruncate(fd, size)
}

// setTimes applies the atime and mtime of a SETATTR, "now" included.
func setTimes(pfd int, name string, in *fuse.SetAttrIn) error {
	ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_OMIT}}
	set := false
	if in.Valid&fuse.FATTR_ATIME_NOW != 0 {
		ts[0], set = unix.Timespec{Nsec: unix.UTIME_NOW}, true
	} else if a, ok := in.GetATime(); ok {
		ts[0], set = unix.NsecToTimespec(a.UnixNano()), true
	}
	if in.Valid&fuse.FATTR_MTIME_NOW != 0 {
		ts[1], set = unix.Timespec{Nsec: unix.UTIME_NOW}, true
	} else if m, ok := in.GetMTime(); ok {
		ts[1], set = unix.NsecToTimespec(m.UnixNano()), true
	}
	if !set {
		return nil
	}
	return unix.UtimesNanoAt(pfd, name, ts, unix.AT_SYMLINK_NOFOLLOW)
}
