package unionfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/stratafs/strata/layer"
	"golang.org/x/sys/unix"
)

// changeUpper runs change on the node's upper entry, copying it up first:
// the common shape of every metadata change.
func (n *node) changeUpper(ctx context.Context, op string, change func() error) syscall.Errno {
	if n.u.upper == nil {
		return syscall.EROFS
	}
	n.u.renameMu.RLock()
	defer n.u.renameMu.RUnlock()
	if err := n.copyUp(ctx, false); err != nil {
		return n.errno(op+": copy-up", "", err)
	}
	return n.errno(op, "", change())
}

// copyUp makes the node exist in the upper directory, copying its parents
// up first. With truncate, a regular file's bytes are not copied (the caller
// is about to truncate it to zero). The caller holds renameMu for reading.
func (n *node) copyUp(ctx context.Context, truncate bool) error {
	if n.upper.Load() {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.upper.Load() {
		return nil
	}
	if n.lower == nil {
		return fmt.Errorf("copy-up: node has neither an upper nor a lower entry")
	}
	name, parent := n.Parent()
	if parent == nil {
		return unix.ENOENT // unlinked while open: nowhere to copy it to
	}
	p := parent.Operations().(*node)
	if err := p.copyUp(ctx, false); err != nil {
		return err
	}
	ppath, ok := p.path()
	if !ok {
		return unix.ENOENT
	}
	pfd, err := p.upperDirFd()
	if err != nil {
		return err
	}
	li, src := n.content()
	st, err := n.u.copyUpEntry(ctx, pfd, name, li, src, n.lower, truncate)
	if err != nil {
		return fmt.Errorf("copy up /%s: %w", n.lpath, err)
	}
	if err := n.linkSiblings(ctx, pfd, name, joinPath(ppath, name)); err != nil {
		// The copy itself is complete and in place; only the other names
		// keep showing the lower file, as if the link were broken.
		n.u.opts.logger.Printf("copy up /%s: linking its other names: %v", n.lpath, err)
	}
	n.u.inos.alias(inoKey{upperLayer, st.Ino}, n.ino())
	n.leaveLowerBacking()
	n.markUpper()
	return nil
}

// leaveLowerBacking switches a node whose opens pass the lower file through
// to direct I/O: it is about to live in the upper directory, and a later
// passthrough open would reuse the kernel's lower backing. The caller holds n.mu.
func (n *node) leaveLowerBacking() {
	if n.io == ioPassthrough && n.ioLower {
		n.io = ioDirect
	}
}

// copyUpEntry creates name in the upper directory pfd as a copy of the
// lower entry e (at lpath in layer li): content, owner, mode, times, xattrs.
// The entry appears under its name only once complete.
//
// Copy-up is not a change a user made, so the parent directory's times are
// put back as they were (as overlayfs does).
func (u *union) copyUpEntry(ctx context.Context, pfd int, name string, li int, lpath string, e *layer.Entry, truncate bool) (unix.Stat_t, error) {
	var st unix.Stat_t
	restore, err := keepTimes(pfd)
	if err != nil {
		return st, err
	}
	defer restore()
	if e.Type == layer.TypeReg {
		err = u.copyUpFile(ctx, pfd, name, li, lpath, e, truncate)
	} else {
		err = copyUpOther(pfd, name, e)
	}
	if err != nil {
		return st, err
	}
	return st, unix.Fstatat(pfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
}

// keepTimes records the access and modification times of the directory
// dirfd and returns a function that puts them back.
func keepTimes(dirfd int) (func(), error) {
	var st unix.Stat_t
	if err := unix.Fstat(dirfd, &st); err != nil {
		return nil, err
	}
	return func() {
		ts := []unix.Timespec{st.Atim, st.Mtim}
		unix.UtimesNanoAt(dirfd, ".", ts, 0)
	}, nil
}

// copyUpFile writes the copy into an unnamed O_TMPFILE, syncs it, and only
// then links it under its name.
func (u *union) copyUpFile(ctx context.Context, pfd int, name string, li int, lpath string, e *layer.Entry, truncate bool) error {
	fd, err := unix.Openat(pfd, ".", unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create temporary file: %w", err)
	}
	dst := os.NewFile(uintptr(fd), name)
	defer dst.Close()
	if !truncate && e.Size > 0 {
		if err := u.copyContent(ctx, dst, li, lpath, e.Size); err != nil {
			return err
		}
	}
	if err := setMeta(fd, e); err != nil {
		return err
	}
	if err := dst.Sync(); err != nil {
		return err
	}
	return unix.Linkat(unix.AT_FDCWD, procPath(fd, ""), pfd, name, unix.AT_SYMLINK_FOLLOW)
}

func (u *union) copyContent(ctx context.Context, dst *os.File, li int, lpath string, size int64) error {
	src, err := u.openLower(ctx, li, lpath)
	if err != nil {
		return err
	}
	defer src.Close()
	if f, ok := src.(*os.File); ok {
		return copySparse(dst, f, size)
	}
	n, err := io.Copy(dst, io.NewSectionReader(src, 0, size))
	if err == nil && n != size {
		err = fmt.Errorf("copied %d bytes of %d: %w", n, size, io.ErrUnexpectedEOF)
	}
	return err
}

// copySparse copies the data ranges of src (as SEEK_DATA and SEEK_HOLE
// find them) with copy_file_range, so holes stay holes and the kernel moves
// the bytes, then sets the size.
func copySparse(dst, src *os.File, size int64) error {
	sfd, dfd := int(src.Fd()), int(dst.Fd())
	for off := int64(0); off < size; {
		data, err := unix.Seek(sfd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole is left
		}
		if err != nil {
			return err
		}
		hole, err := unix.Seek(sfd, data, unix.SEEK_HOLE)
		if err != nil {
			return err
		}
		hole = min(hole, size)
		for data < hole {
			in, out := data, data
			k, err := unix.CopyFileRange(sfd, &in, dfd, &out, int(min(hole-data, 1<<30)), 0)
			if err != nil {
				return err
			}
			if k == 0 {
				return fmt.Errorf("copy at %d of %d: %w", data, size, io.ErrUnexpectedEOF)
			}
			data += int64(k)
		}
		off = hole
	}
	return dst.Truncate(size)
}

// setMeta gives the open file fd the lower entry's owner, mode, xattrs and
// times, in an order that keeps each: chown clears setuid bits, so mode
// comes after it, and times come last.
func setMeta(fd int, e *layer.Entry) error {
	if err := unix.Fchown(fd, int(e.UID), int(e.GID)); err != nil {
		return err
	}
	if err := unix.Fchmod(fd, e.Perm); err != nil {
		return err
	}
	for k, v := range e.Xattrs {
		if err := unix.Fsetxattr(fd, k, v, 0); err != nil {
			return fmt.Errorf("xattr %s: %w", k, err)
		}
	}
	ts := []unix.Timespec{unix.NsecToTimespec(e.Atime), unix.NsecToTimespec(e.Mtime)}
	return unix.UtimesNanoAt(unix.AT_FDCWD, procPath(fd, ""), ts, 0)
}

// copyUpOther copies a directory (its own metadata only: its children still
// merge from below), symlink or special file: built under a temporary name,
// then renamed into place.
func copyUpOther(pfd int, name string, e *layer.Entry) error {
	tmp := tmpName()
	var err error
	switch e.Type {
	case layer.TypeDir:
		err = unix.Mkdirat(pfd, tmp, 0o700)
	case layer.TypeSymlink:
		err = unix.Symlinkat(e.Target, pfd, tmp)
	default:
		err = unix.Mknodat(pfd, tmp, e.Type.Mode()|0o600, int(e.Rdev))
	}
	if err != nil {
		return err
	}
	if err := setMetaAt(pfd, tmp, e); err != nil {
		removeAt(pfd, tmp, e.Type == layer.TypeDir)
		return err
	}
	if err := unix.Renameat2(pfd, tmp, pfd, name, unix.RENAME_NOREPLACE); err != nil {
		removeAt(pfd, tmp, e.Type == layer.TypeDir)
		if e.Type == layer.TypeDir && errors.Is(err, unix.EEXIST) {
			// Copied up meanwhile by another path to the same directory
			// (hard-link siblings are linked by path, not through nodes).
			var st unix.Stat_t
			if unix.Fstatat(pfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
				return nil
			}
		}
		return err
	}
	return nil
}

// setMetaAt is setMeta for an entry that cannot be opened (a symlink, a
// device) or need not be (a directory).
func setMetaAt(pfd int, name string, e *layer.Entry) error {
	if err := unix.Fchownat(pfd, name, int(e.UID), int(e.GID), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	p := procPath(pfd, name)
	if e.Type != layer.TypeSymlink {
		if err := unix.Fchmodat(pfd, name, e.Perm, 0); err != nil {
			return err
		}
	}
	for k, v := range e.Xattrs {
		if err := unix.Lsetxattr(p, k, v, 0); err != nil {
			return fmt.Errorf("xattr %s: %w", k, err)
		}
	}
	ts := []unix.Timespec{unix.NsecToTimespec(e.Atime), unix.NsecToTimespec(e.Mtime)}
	return unix.UtimesNanoAt(pfd, name, ts, unix.AT_SYMLINK_NOFOLLOW)
}

func removeAt(pfd int, name string, isDir bool) {
	flag := 0
	if isDir {
		flag = unix.AT_REMOVEDIR
	}
	unix.Unlinkat(pfd, name, flag)
}

// copyUpTree copies the whole merged subtree of the directory at path (its
// upper directory open as dirfd) into the upper directory and makes every
// directory in it opaque, so that it no longer depends on any lower layer
// and can move anywhere. ldirs are its contributing lower layers.
func (u *union) copyUpTree(ctx context.Context, dirfd int, path string, ldirs []int) error {
	if len(ldirs) == 0 {
		return nil
	}
	kids, err := mergeLower(ctx, u.layers, ldirs, path)
	if err != nil {
		return err
	}
	// No check of ctx between children: an interrupted rename completes,
	// as overlayfs's does (see "Interrupts" in the package doc), and one
	// abandoned midway would leave the subtree half copied.
	for _, name := range kids.names {
		c := kids.children[name]
		up, err := statAt(dirfd, name)
		switch {
		case errors.Is(err, unix.ENOENT):
			err = u.copyUpChild(ctx, dirfd, name, joinPath(path, name), c)
		case err != nil:
		case up.whiteout || up.opaque || up.st.Mode&unix.S_IFMT != unix.S_IFDIR || c.entry.Type != layer.TypeDir:
			// Hidden, cut off or replaced in the upper: nothing below shows.
		default:
			err = u.copyUpSubdir(ctx, dirfd, name, joinPath(path, name), c.dirs)
		}
		if err != nil {
			return err
		}
	}
	return setOpaque(dirfd, ".")
}

// copyUpChild copies up a lower child that has no upper entry yet, and
// for a directory everything below it.
func (u *union) copyUpChild(ctx context.Context, dirfd int, name, path string, c lowerChild) error {
	li, src := c.content(path)
	if _, err := u.copyUpEntry(ctx, dirfd, name, li, src, c.entry, false); err != nil {
		return fmt.Errorf("copy up /%s: %w", path, err)
	}
	if c.entry.Type != layer.TypeDir {
		return nil
	}
	if err := u.copyUpSubdir(ctx, dirfd, name, path, c.dirs); err != nil {
		return err
	}
	// Filling the copy moved its times: give it the lower ones again.
	ts := []unix.Timespec{unix.NsecToTimespec(c.entry.Atime), unix.NsecToTimespec(c.entry.Mtime)}
	return unix.UtimesNanoAt(dirfd, name, ts, unix.AT_SYMLINK_NOFOLLOW)
}

func (u *union) copyUpSubdir(ctx context.Context, pfd int, name, path string, ldirs []int) error {
	fd, err := unix.Openat(pfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return u.copyUpTree(ctx, fd, path, ldirs)
}
