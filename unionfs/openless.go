package unionfs

import (
	"context"
	"os"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// On an open-less mount (WithOpenless) the kernel sends no OPEN, so READs
// arrive without a file handle: the node serves them itself, through one
// lazyFile kept from its first read until the kernel forgets it. Keeping it
// saves opening the lower content (for a local layer, a file descriptor)
// on every read that misses the page cache. maxKernelFiles bounds how many
// nodes keep one; beyond it a read opens the content for itself alone.
const maxKernelFiles = 4096

var (
	_ = (fs.NodeReader)((*node)(nil))
	_ = (fs.NodeFlusher)((*node)(nil))
)

// Read serves a READ: through its handle when the open made one, else (an
// open-less mount) through the node's own.
func (n *node) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if r, ok := fh.(fs.FileReader); ok {
		return r.Read(ctx, dest, off)
	}
	if fh != nil || !n.u.opts.openless {
		return nil, syscall.EBADF
	}
	f, kept := n.kernelFile()
	res, errno := f.Read(ctx, dest, off)
	if !kept {
		f.Release(ctx)
	}
	return res, errno
}

// Flush runs at every close(2). A handle flushes itself; without one (an
// open-less mount) there is nothing to report, and ENOSYS tells the kernel
// to stop sending FLUSH for the mount's life.
func (n *node) Flush(ctx context.Context, fh fs.FileHandle) syscall.Errno {
	if f, ok := fh.(fs.FileFlusher); ok {
		return f.Flush(ctx)
	}
	if fh == nil && n.u.opts.openless {
		return syscall.ENOSYS
	}
	return 0
}

// kernelFile returns the handle for the node's open-less reads, and
// whether the node keeps it (else the caller releases it after use).
func (n *node) kernelFile() (*lazyFile, bool) {
	if f := n.kfile.Load(); f != nil {
		return f, true
	}
	f := &lazyFile{n: n}
	if n.u.kfiles.Add(1) > maxKernelFiles {
		n.u.kfiles.Add(-1)
		return f, false
	}
	if !n.kfile.CompareAndSwap(nil, f) {
		n.u.kfiles.Add(-1)
		return n.kfile.Load(), true
	}
	return f, true
}

// dropKernelFile releases the node's open-less handle, if it has one.
func (n *node) dropKernelFile() {
	if f := n.kfile.Swap(nil); f != nil {
		f.Release(context.Background())
		n.u.kfiles.Add(-1)
	}
}

var _ = (fs.NodeLseeker)((*node)(nil))

// Lseek answers SEEK_DATA and SEEK_HOLE (the kernel handles the other
// whences). A local file knows its holes, and kernel overlayfs copies a
// sparse file of an open-less mount up as sparse only if strata tells it
// where they are; bytes served from a layer's chunks have none.
func (n *node) Lseek(ctx context.Context, fh fs.FileHandle, off uint64, whence uint32) (uint64, syscall.Errno) {
	if l, ok := fh.(fs.FileLseeker); ok {
		return l.Lseek(ctx, off, whence)
	}
	f, _ := fh.(*lazyFile)
	if fh == nil && n.u.opts.openless {
		var kept bool
		if f, kept = n.kernelFile(); !kept {
			defer f.Release(ctx)
		}
	}
	if f != nil {
		if c, err := f.content(ctx); err == nil {
			if local, ok := c.(*os.File); ok {
				off, err := unix.Seek(int(local.Fd()), int64(off), int(whence))
				return uint64(off), fs.ToErrno(err)
			}
		}
	}
	var attr fuse.AttrOut
	if errno := n.Getattr(ctx, fh, &attr); errno != 0 {
		return 0, errno
	}
	return dataSeek(off, attr.Size, whence)
}

// dataSeek answers SEEK_DATA and SEEK_HOLE for a file of size bytes that
// has no holes.
func dataSeek(off, size uint64, whence uint32) (uint64, syscall.Errno) {
	if off >= size {
		return 0, syscall.ENXIO
	}
	switch whence {
	case unix.SEEK_DATA:
		return off, 0
	case unix.SEEK_HOLE:
		return size, 0
	}
	return 0, syscall.EINVAL
}
