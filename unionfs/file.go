package unionfs

import (
	"context"
	"os"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// file is an open regular file served through strata: an upper file, or a
// lower file with a local descriptor.
type file struct {
	f *os.File
}

// ptFile is a file that the kernel may serve by passthrough.
type ptFile struct{ *file }

var (
	_ = (fs.FileReader)((*file)(nil))
	_ = (fs.FileWriter)((*file)(nil))
	_ = (fs.FileFlusher)((*file)(nil))
	_ = (fs.FileFsyncer)((*file)(nil))
	_ = (fs.FileReleaser)((*file)(nil))
	_ = (fs.FileAllocater)((*file)(nil))
	_ = (fs.FileLseeker)((*file)(nil))
	_ = (fs.FilePassthroughFder)((*ptFile)(nil))
)

// PassthroughFd hands the descriptor to the kernel; it stays open until
// Release.
func (f *ptFile) PassthroughFd() (int, bool) { return int(f.f.Fd()), true }

// asFile returns the file behind a handle of ours, or nil.
func asFile(fh fs.FileHandle) *file {
	switch h := fh.(type) {
	case *file:
		return h
	case *ptFile:
		return h.file
	}
	return nil
}

func (f *file) fd() int { return int(f.f.Fd()) }

func (f *file) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n, err := unix.Pread(f.fd(), dest, off)
	if err != nil {
		return nil, fs.ToErrno(err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

func (f *file) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	n, err := unix.Pwrite(f.fd(), data, off)
	if err != nil {
		return 0, fs.ToErrno(err)
	}
	return uint32(n), 0
}

// Flush runs at every close(2) of a descriptor; closing a duplicate reports
// errors the way close of the real file would (e.g. a full disk on NFS).
func (f *file) Flush(ctx context.Context) syscall.Errno {
	fd, err := unix.Dup(f.fd())
	if err != nil {
		return fs.ToErrno(err)
	}
	return fs.ToErrno(unix.Close(fd))
}

// fsyncDataOnly is FUSE_FSYNC_FDATASYNC: the caller asked for fdatasync(2).
const fsyncDataOnly = 1

func (f *file) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	if flags&fsyncDataOnly != 0 {
		return fs.ToErrno(unix.Fdatasync(f.fd()))
	}
	return fs.ToErrno(unix.Fsync(f.fd()))
}

func (f *file) Release(ctx context.Context) syscall.Errno { return fs.ToErrno(f.f.Close()) }

func (f *file) Allocate(ctx context.Context, off, size uint64, mode uint32) syscall.Errno {
	return fs.ToErrno(unix.Fallocate(f.fd(), mode, int64(off), int64(size)))
}

func (f *file) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	n, err := unix.Seek(f.fd(), int64(off), int(whence))
	return uint64(n), fs.ToErrno(err)
}

var _ = (fs.NodeOpener)((*node)(nil))

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	write := flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&syscall.O_TRUNC != 0
	if write {
		if n.u.upper == nil {
			return nil, 0, syscall.EROFS
		}
		n.u.renameMu.RLock()
		err := n.copyUp(ctx, flags&syscall.O_TRUNC != 0)
		n.u.renameMu.RUnlock()
		if err != nil {
			return nil, 0, n.errno("open: copy-up", "", err)
		}
	}
	if n.upper.Load() {
		return n.openUpper(flags)
	}
	return n.openLower(ctx)
}

func (n *node) openUpper(flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	var fd int
	const strip = syscall.O_CREAT | syscall.O_EXCL | syscall.O_NOCTTY
	err := n.withUpperParent(func(pfd int, name string) (err error) {
		fd, err = unix.Openat(pfd, name, int(flags)&^strip|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return nil, 0, n.errno("open", "", err)
	}
	fh, fuseFlags := n.handle(os.NewFile(uintptr(fd), ""), false)
	return fh, fuseFlags, 0
}

func (n *node) openLower(ctx context.Context) (fs.FileHandle, uint32, syscall.Errno) {
	c, err := n.u.layers[n.llayer].Open(ctx, n.lpath)
	if err != nil {
		return nil, 0, n.errno("open", "", err)
	}
	f, ok := c.(*os.File)
	if !ok {
		c.Close()
		return nil, 0, n.errno("open", "", syscall.ENOTSUP)
	}
	fh, fuseFlags := n.handle(f, true)
	return fh, fuseFlags, 0
}

// handle wraps an open descriptor and picks how the kernel will do its
// I/O: passthrough when allowed, otherwise through strata with the page
// cache kept across opens (strata is the only writer), or, for an inode
// that was copied up after a passthrough open of its lower file, direct I/O
// (see the package doc).
func (n *node) handle(f *os.File, lower bool) (fs.FileHandle, uint32) {
	n.mu.Lock()
	defer n.mu.Unlock()
	h := &file{f: f}
	switch {
	case n.ptBroken:
		return h, fuse.FOPEN_DIRECT_IO
	case n.u.opts.passthrough:
		if lower {
			n.ptLower = true
		}
		return &ptFile{h}, fuse.FOPEN_KEEP_CACHE
	}
	return h, fuse.FOPEN_KEEP_CACHE
}

var _ = (fs.NodeFsyncer)((*node)(nil))

// Fsync syncs an open file, or a directory (databases fsync a directory
// after creating or renaming in it): its upper directory if it has one.
func (n *node) Fsync(ctx context.Context, fh fs.FileHandle, flags uint32) syscall.Errno {
	if f := asFile(fh); f != nil {
		return f.Fsync(ctx, flags)
	}
	if !n.IsDir() || !n.upper.Load() {
		return 0 // nothing of it is ours to sync: the lower layers are read-only
	}
	var fd int
	var err error
	if p, ok := n.path(); ok {
		fd, err = n.u.upper.openDir(p)
	} else {
		err = unix.ENOENT
	}
	if err != nil {
		return n.errno("fsync", "", err)
	}
	defer unix.Close(fd)
	return n.errno("fsync", "", unix.Fsync(fd))
}
