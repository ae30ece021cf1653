package unionfs

import (
	"context"
	"errors"
	"syscall"

	"github.com/stratafs/strata/layer"
)

// errno is the one place where an error becomes what the kernel is told.
// An errno from a system call passes through; the layer sentinels map to
// their errno; anything else is EIO, and its cause is logged here, once, with
// the operation and path, since the caller will only ever see "I/O error".
func (n *node) errno(op, name string, err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var e syscall.Errno
	switch {
	case errors.Is(err, context.Canceled):
		return syscall.EINTR
	case errors.Is(err, layer.ErrNotExist):
		return syscall.ENOENT
	case errors.Is(err, layer.ErrNotDir):
		return syscall.ENOTDIR
	case errors.As(err, &e):
		if e == syscall.EIO {
			n.logf(op, name, err)
		}
		return e
	}
	n.logf(op, name, err)
	return syscall.EIO
}

func (n *node) logf(op, name string, err error) {
	p, ok := n.path()
	if !ok {
		p = "(unlinked)"
	}
	if name != "" {
		p = joinPath(p, name)
	}
	n.u.opts.logger.Printf("%s /%s: %v", op, p, err)
}
