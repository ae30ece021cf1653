package unionfs

import (
	"context"
	"errors"
	"strings"

	"github.com/stratafs/strata/layer"
	"golang.org/x/sys/unix"
)

// linker is offered by a layer that can list the hard links of a file.
type linker interface {
	Links(ctx context.Context, id uint64) ([]string, error)
}

// The hard links of one lower file are one node, with one inode number. When
// that node is copied up, every other name of it that the merged tree still
// shows is linked to the copy in the upper directory, so all names keep
// showing the same file (as kernel overlayfs does with index=on; with
// index=off it would break the link instead).

// linkSiblings links the other visible names of n's lower file to its fresh
// upper copy: name in pfd, at path copied.
func (n *node) linkSiblings(ctx context.Context, pfd int, name, copied string) error {
	if n.lower == nil || n.lower.Nlink <= 1 || n.lower.Type == layer.TypeDir {
		return nil
	}
	l, ok := n.u.layers[n.llayer].(linker)
	if !ok {
		return nil
	}
	paths, err := l.Links(context.WithoutCancel(ctx), n.lower.ID)
	if err != nil {
		return err
	}
	for _, p := range paths {
		if p == copied {
			continue
		}
		if err := n.u.linkUpPath(ctx, p, pfd, name, n.llayer, n.lower.ID); err != nil {
			return err
		}
	}
	return nil
}

// linkUpPath links srcName in srcfd at path p of the upper directory if the
// merged tree shows there the lower file id of layer li, copying up the
// directories on the way.
func (u *union) linkUpPath(ctx context.Context, p string, srcfd int, srcName string, li int, id uint64) error {
	dirfd, err := u.upper.openDir("")
	if err != nil {
		return err
	}
	defer func() { unix.Close(dirfd) }()
	u.root.mu.Lock()
	ldirs := u.root.ldirs
	u.root.mu.Unlock()
	comps := strings.Split(p, "/")
	cur := ""
	for i, c := range comps {
		kids, err := mergeLower(ctx, u.layers, ldirs, cur)
		if err != nil {
			return err
		}
		lc, ok := kids.get(c)
		if !ok {
			return nil
		}
		cur = joinPath(cur, c)
		up, err := statAt(dirfd, c)
		exists := err == nil
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return err
		}
		if i == len(comps)-1 {
			if exists || lc.layer != li || lc.entry.ID != id {
				return nil // hidden, replaced or already in the upper: not this file's name any more
			}
			return unix.Linkat(srcfd, srcName, dirfd, c, 0)
		}
		if lc.entry.Type != layer.TypeDir || (exists && (up.whiteout || up.opaque || up.st.Mode&unix.S_IFMT != unix.S_IFDIR)) {
			return nil
		}
		if !exists {
			if _, err := u.copyUpEntry(ctx, dirfd, c, lc.layer, cur, lc.entry, false); err != nil {
				return err
			}
		}
		next, err := unix.Openat(dirfd, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		unix.Close(dirfd)
		dirfd, ldirs = next, lc.dirs
	}
	return nil
}
