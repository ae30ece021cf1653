package unionfs

import (
	"context"
	"sort"
	"strings"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/stratafs/strata/layer"
	"golang.org/x/sys/unix"
)

// withXattrPath names the node's upper entry for the path-based l*xattr calls.
func (n *node) withXattrPath(fn func(p string) error) error {
	return n.withUpperParent(func(pfd int, name string) error { return fn(procPath(pfd, name)) })
}

// xattrTeller is a layer that knows, once open, whether any of its
// entries carries an extended attribute (package lazy's layers do, from
// their TOC).
type xattrTeller interface {
	HasXattrs() bool
}

// noXattrs reports whether every layer says none of its entries has an
// extended attribute. A layer that cannot say might have some.
func noXattrs(layers []layer.Layer) bool {
	for _, l := range layers {
		if t, ok := l.(xattrTeller); !ok || t.HasXattrs() {
			return false
		}
	}
	return true
}

var _ = (fs.NodeGetxattrer)((*node)(nil))

// Getxattr answers from the entry's xattrs. On a read-only mount whose
// layers have none at all, it answers ENOSYS: the kernel then fails every
// getxattr on the mount with EOPNOTSUPP by itself and never asks again.
// Kernel overlayfs over such a mount (a container's, or --kernel-overlay)
// asks the lower layer for its own xattrs on every directory it looks up
// and security.capability on every file it executes, through each new
// overlay mount: 58 GETXATTR round trips for each `ctr run` of python3
// in debian-python, measured, before the first line of output.
func (n *node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if n.u.noXattrs {
		return 0, syscall.ENOSYS
	}
	if layer.IsPrivateXattr(attr) {
		return 0, syscall.ENODATA
	}
	if !n.upper.Load() {
		if n.lower == nil {
			return 0, syscall.ENODATA
		}
		v, ok := n.lower.Xattrs[attr]
		if !ok {
			return 0, syscall.ENODATA
		}
		return copyOut(dest, v)
	}
	var size int
	err := n.withXattrPath(func(p string) (err error) {
		size, err = unix.Lgetxattr(p, attr, dest)
		return err
	})
	if err != nil {
		return 0, n.errno("getxattr", "", err)
	}
	return uint32(size), 0
}

// copyOut follows getxattr(2)'s contract: an empty dest asks for the size.
func copyOut(dest, v []byte) (uint32, syscall.Errno) {
	if len(dest) == 0 {
		return uint32(len(v)), 0
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

var _ = (fs.NodeListxattrer)((*node)(nil))

func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	var names []string
	if !n.upper.Load() {
		if n.lower != nil {
			for name := range n.lower.Xattrs {
				names = append(names, name)
			}
		}
	} else {
		err := n.withXattrPath(func(p string) error {
			buf := make([]byte, 64<<10)
			k, err := unix.Llistxattr(p, buf)
			if err != nil {
				return err
			}
			for _, s := range strings.Split(string(buf[:k]), "\x00") {
				if s != "" && !layer.IsPrivateXattr(s) {
					names = append(names, s)
				}
			}
			return nil
		})
		if err != nil {
			return 0, n.errno("listxattr", "", err)
		}
	}
	sort.Strings(names)
	var b strings.Builder
	for _, s := range names {
		b.WriteString(s)
		b.WriteByte(0)
	}
	return copyOut(dest, []byte(b.String()))
}

var _ = (fs.NodeSetxattrer)((*node)(nil))

func (n *node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	if layer.IsPrivateXattr(attr) {
		return syscall.EPERM
	}
	return n.changeUpper(ctx, "setxattr", func() error {
		return n.withXattrPath(func(p string) error { return unix.Lsetxattr(p, attr, data, int(flags)) })
	})
}

var _ = (fs.NodeRemovexattrer)((*node)(nil))

func (n *node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	if layer.IsPrivateXattr(attr) {
		return syscall.EPERM
	}
	if !n.upper.Load() {
		// Removing what is not there changes nothing and needs no copy-up.
		if n.lower == nil || n.lower.Xattrs[attr] == nil {
			if n.u.upper == nil {
				return syscall.EROFS
			}
			return syscall.ENODATA
		}
	}
	return n.changeUpper(ctx, "removexattr", func() error {
		return n.withXattrPath(func(p string) error { return unix.Lremovexattr(p, attr) })
	})
}
