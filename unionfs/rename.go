package unionfs

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/stratafs/strata/layer"
	"golang.org/x/sys/unix"
)

var _ = (fs.NodeRenamer)((*node)(nil))

// Rename moves name in n to newName in newParent, with rename(2)'s rules
// judged on the merged view, then done in the upper directory in one
// renameat2 call: RENAME_WHITEOUT leaves a whiteout behind when a lower entry
// would otherwise show through at the old name.
func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if n.u.upper == nil {
		return syscall.EROFS
	}
	if flags&^(unix.RENAME_NOREPLACE|unix.RENAME_EXCHANGE) != 0 || flags == unix.RENAME_NOREPLACE|unix.RENAME_EXCHANGE {
		return syscall.EINVAL
	}
	if isTmpName(newName) {
		return syscall.EPERM // reserved for entries strata is building
	}
	np := newParent.(*node)
	src, dst, errno := n.renameStates(ctx, name, np, newName, flags)
	if errno != 0 {
		return errno
	}
	srcNode := n.childNode(name)
	dstNode := np.childNode(newName)
	if srcNode == nil || (flags&unix.RENAME_EXCHANGE != 0 && dstNode == nil) {
		return syscall.ENOENT // the kernel looks both names up first
	}
	// A directory with lower parts cannot move as it is: its lower parts
	// stay where they are. It is copied up whole, which excludes every other
	// change meanwhile.
	tree := hasLowerDirs(&src) || (flags&unix.RENAME_EXCHANGE != 0 && hasLowerDirs(&dst))
	if tree {
		n.u.renameMu.Lock()
		defer n.u.renameMu.Unlock()
	} else {
		n.u.renameMu.RLock()
		defer n.u.renameMu.RUnlock()
	}
	if err := n.prepareMove(ctx, srcNode, hasLowerDirs(&src)); err != nil {
		return n.errno("rename: copy-up", name, err)
	}
	if flags&unix.RENAME_EXCHANGE != 0 {
		if err := np.prepareMove(ctx, dstNode, hasLowerDirs(&dst)); err != nil {
			return n.errno("rename: copy-up", newName, err)
		}
	}
	if err := np.copyUp(ctx, false); err != nil {
		return n.errno("rename: copy-up", newName, err)
	}
	// Copy-ups changed the upper side of both names: read them again.
	src, dst, errno = n.renameStates(ctx, name, np, newName, flags)
	if errno != 0 {
		return errno
	}
	err := n.withUpperDir(func(pfd int) error {
		return np.withUpperDir(func(npfd int) error {
			if flags&unix.RENAME_EXCHANGE != 0 {
				return exchangeUpper(pfd, &src, n.merged(), npfd, &dst, np.merged())
			}
			return moveUpper(pfd, &src, npfd, &dst, np.merged())
		})
	})
	if err != nil {
		return n.errno("rename", name, err)
	}
	if flags&unix.RENAME_EXCHANGE == 0 && dst.hasUpper && (dst.isDir() || dst.up.st.Nlink <= 1) {
		n.u.inos.forget(inoKey{upperLayer, dst.up.st.Ino})
	}
	return 0
}

// renameStates resolves both names and applies rename(2)'s checks to the
// merged view.
func (n *node) renameStates(ctx context.Context, name string, np *node, newName string, flags uint32) (src, dst childState, errno syscall.Errno) {
	src, err := n.resolve(ctx, name)
	if err != nil {
		return src, dst, n.errno("rename", name, err)
	}
	if dst, err = np.resolve(ctx, newName); err != nil {
		return src, dst, n.errno("rename", newName, err)
	}
	switch {
	case !src.exists():
		return src, dst, syscall.ENOENT
	case flags&unix.RENAME_EXCHANGE != 0:
		if !dst.exists() {
			return src, dst, syscall.ENOENT
		}
		return src, dst, 0
	case !dst.exists():
		return src, dst, 0
	case flags&unix.RENAME_NOREPLACE != 0:
		return src, dst, syscall.EEXIST
	case src.isDir() && !dst.isDir():
		return src, dst, syscall.ENOTDIR
	case !src.isDir() && dst.isDir():
		return src, dst, syscall.EISDIR
	case dst.isDir():
		return src, dst, np.checkEmpty(ctx, newName)
	}
	return src, dst, 0
}

// hasLowerDirs reports whether a name is a directory that merges lower
// directories.
func hasLowerDirs(c *childState) bool {
	return c.exists() && c.isDir() && c.lowerVisible() && c.lower.entry.Type == layer.TypeDir &&
		!(c.hasUpper && c.up.opaque)
}

func (n *node) childNode(name string) *node {
	ch := n.GetChild(name)
	if ch == nil {
		return nil
	}
	return ch.Operations().(*node)
}

// prepareMove puts child entirely in the upper directory: copied up, and,
// for a directory with lower parts, its whole subtree copied up and made
// opaque. The caller holds renameMu for writing when tree is set.
func (n *node) prepareMove(ctx context.Context, child *node, tree bool) error {
	if err := child.copyUp(ctx, false); err != nil {
		return err
	}
	if !tree {
		return nil
	}
	err := child.withUpperParent(func(pfd int, name string) error {
		fd, err := unix.Openat(pfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		child.mu.Lock()
		ldirs := child.ldirs
		child.mu.Unlock()
		return n.u.copyUpTree(ctx, fd, child.lpath, ldirs)
	})
	if err != nil {
		return err
	}
	child.settleSubtree()
	return nil
}

// settleSubtree tells the nodes below a copied-up tree that they now live
// in the upper directory only.
func (n *node) settleSubtree() {
	n.mu.Lock()
	n.ldirs, n.kids = nil, nil
	n.mu.Unlock()
	for _, ch := range n.Children() {
		c := ch.Operations().(*node)
		if !c.upper.Load() {
			if st, err := c.statUpper(); err == nil {
				n.u.inos.alias(inoKey{upperLayer, st.Ino}, c.ino())
			}
			c.mu.Lock()
			c.leaveLowerBacking()
			c.mu.Unlock()
			c.markUpper()
		}
		if ch.IsDir() {
			c.settleSubtree()
		}
	}
}

// merged reports whether the directory merges lower directories.
func (n *node) merged() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.ldirs) > 0
}

// A directory that moves into a merged directory is made opaque, as
// overlayfs does: no lower entry at its new name, now or in a layer stack
// this upper is later mounted on, may show through it.
func opaqueOnMove(pfd int, c *childState, intoMerged bool, toLower bool) error {
	if !c.isDir() || c.up.opaque || !(intoMerged || toLower) {
		return nil
	}
	return setOpaque(pfd, c.name)
}

// moveUpper renames src over dst (which may be absent, a whiteout, or a
// merged-empty entry) in the upper directory; intoMerged tells whether dst's
// directory merges lower ones.
func moveUpper(pfd int, src *childState, npfd int, dst *childState, intoMerged bool) error {
	srcDir := src.isDir()
	if err := opaqueOnMove(pfd, src, intoMerged, dst.lowerVisible()); err != nil {
		return err
	}
	if dst.hasUpper && dst.isDir() {
		if err := clearWhiteouts(npfd, dst.name); err != nil {
			return err
		}
	}
	var flags uint
	if src.lowerVisible() {
		flags = unix.RENAME_WHITEOUT
	}
	if !(srcDir && dst.whiteout) {
		return unix.Renameat2(pfd, src.name, npfd, dst.name, flags)
	}
	// A directory cannot replace a whiteout by rename: swap them, then
	// the whiteout at the old name stays only if needed.
	if err := unix.Renameat2(pfd, src.name, npfd, dst.name, unix.RENAME_EXCHANGE); err != nil {
		return err
	}
	if flags == unix.RENAME_WHITEOUT {
		return nil
	}
	return unix.Unlinkat(pfd, src.name, 0)
}

// exchangeUpper swaps two upper entries; srcMerged and dstMerged tell
// whether their directories merge lower ones.
func exchangeUpper(pfd int, src *childState, srcMerged bool, npfd int, dst *childState, dstMerged bool) error {
	if err := opaqueOnMove(pfd, src, dstMerged, dst.lowerVisible()); err != nil {
		return err
	}
	if err := opaqueOnMove(npfd, dst, srcMerged, src.lowerVisible()); err != nil {
		return err
	}
	return unix.Renameat2(pfd, src.name, npfd, dst.name, unix.RENAME_EXCHANGE)
}
