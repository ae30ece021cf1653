package unionfs

import (
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/stratafs/strata/layer"
	"golang.org/x/sys/unix"
)

// file is an open regular file served through strata: an upper file, or a
// lower file with a local descriptor.
type file struct {
	f       *os.File
	release func() // if set, called at Release

	// lower marks a handle on a lower file's local bytes (a cache entry, a
	// layer directory's file): its descriptor's attributes are that
	// file's, not the node's.
	lower bool
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

func (f *file) Release(ctx context.Context) syscall.Errno {
	if f.release != nil {
		f.release()
	}
	return fs.ToErrno(f.f.Close())
}

func (f *file) Allocate(ctx context.Context, off, size uint64, mode uint32) syscall.Errno {
	return fs.ToErrno(unix.Fallocate(f.fd(), mode, int64(off), int64(size)))
}

func (f *file) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	n, err := unix.Seek(f.fd(), int64(off), int(whence))
	return uint64(n), fs.ToErrno(err)
}

// ioMode is how the kernel does a node's file I/O. It is chosen at the
// node's first open and kept while the node lives: the kernel fails an open
// whose mode differs from that of the inode's other opens.
type ioMode uint8

const (
	ioUndecided   ioMode = iota
	ioCached             // through strata, pages cached across opens
	ioPassthrough        // the kernel reads and writes the backing file itself
	ioDirect             // through strata, uncached: a passthrough lower file that was copied up
)

// passthroughMin is the size from which a lower file is opened with
// passthrough. Below it an open costs no system call at all (the file is
// opened on the first read that misses the page cache); above it the
// kernel's own read path and the sharing of the lower file's page cache
// between mounts pay for the backing-file setup.
const passthroughMin = 64 << 10

// decideIO returns the node's I/O mode, choosing it on first use. The
// caller holds n.mu.
func (n *node) decideIO(upper bool) ioMode {
	if n.io != ioUndecided {
		return n.io
	}
	switch {
	case !n.u.opts.passthrough:
		n.io = ioCached
	case upper:
		n.io = ioPassthrough
	case n.lower != nil && n.lower.Size >= passthroughMin:
		n.io, n.ioLower = ioPassthrough, true
	default:
		n.io = ioCached
	}
	return n.io
}

var _ = (fs.NodeOpener)((*node)(nil))

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if n.u.opts.openless {
		return nil, 0, syscall.ENOSYS // the kernel stops asking (see WithOpenless)
	}
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
	upper := n.upper.Load()
	n.mu.Lock()
	mode := n.decideIO(upper)
	n.mu.Unlock()
	var fh fs.FileHandle
	var errno syscall.Errno
	switch {
	case upper:
		fh, errno = n.openUpper(flags, mode)
	case mode == ioPassthrough:
		fh, errno = n.openLower(ctx)
	default:
		fh = &lazyFile{n: n}
	}
	if errno != 0 {
		return nil, 0, errno
	}
	return fh, openFlags(mode, write), 0
}

// openFlags tells the kernel how to treat an open of the given mode.
func openFlags(mode ioMode, write bool) uint32 {
	flags := uint32(fuse.FOPEN_KEEP_CACHE)
	if mode == ioDirect {
		flags = fuse.FOPEN_DIRECT_IO
	}
	if !write {
		flags |= fuse.FOPEN_NOFLUSH // nothing to report at close of a reader
	}
	return flags
}

func (n *node) openUpper(flags uint32, mode ioMode) (fs.FileHandle, syscall.Errno) {
	var fd int
	const strip = syscall.O_CREAT | syscall.O_EXCL | syscall.O_NOCTTY
	err := n.withUpperParent(func(pfd int, name string) (err error) {
		fd, err = unix.Openat(pfd, name, int(flags)&^strip|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return nil, n.errno("open", "", err)
	}
	return newHandle(os.NewFile(uintptr(fd), ""), mode), 0
}

// newHandle wraps an open descriptor as a handle of the given mode.
func newHandle(f *os.File, mode ioMode) fs.FileHandle {
	if mode == ioPassthrough {
		return &ptFile{&file{f: f}}
	}
	return &file{f: f}
}

// lowerOpens is what the open handles of one lower passthrough file are.
// The kernel refuses a passthrough open of an inode that has cached opens,
// and a cached open of one that has passthrough opens. A lower file of a
// lazy layer opens through strata (cached) until its bytes are all local,
// then as a local file (passthrough): whichever kind is open first is what
// later opens get, until every handle is closed.
type lowerOpens struct {
	mu     sync.Mutex
	pt     int      // passthrough handles
	cached int      // handles served through strata
	back   *os.File // while pt > 0: a descriptor of the backing file, for more opens
}

func (n *node) openLower(ctx context.Context) (fs.FileHandle, syscall.Errno) {
	o := &n.lowerOpens
	if h := o.share(); h != nil {
		return h, 0
	}
	li, p := n.content()
	c, err := n.u.openLower(ctx, li, p)
	if err != nil {
		return nil, n.errno("open", "", err)
	}
	return o.add(n, c), 0
}

// share returns another passthrough handle on the backing file of the
// handles open, if there are any.
func (o *lowerOpens) share() fs.FileHandle {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.pt == 0 {
		return nil
	}
	fd, err := unix.FcntlInt(o.back.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil // open it anew
	}
	o.pt++
	return &ptFile{&file{f: os.NewFile(uintptr(fd), ""), release: func() { o.done(true) }, lower: true}}
}

// add makes the handle for a newly opened content c: passthrough when c is
// a local file and no cached handle is open, else served through strata.
func (o *lowerOpens) add(n *node, c layer.Content) fs.FileHandle {
	o.mu.Lock()
	defer o.mu.Unlock()
	f, local := c.(*os.File)
	if local && o.cached == 0 {
		if o.pt == 0 {
			fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
			if err != nil {
				return o.addCached(n, c)
			}
			o.back = os.NewFile(uintptr(fd), "")
		}
		o.pt++
		return &ptFile{&file{f: f, release: func() { o.done(true) }, lower: true}}
	}
	return o.addCached(n, c)
}

func (o *lowerOpens) addCached(n *node, c layer.Content) fs.FileHandle {
	o.cached++
	return &lazyFile{n: n, c: c, release: func() { o.done(false) }}
}

// done counts a handle closed.
func (o *lowerOpens) done(pt bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !pt {
		o.cached--
		return
	}
	if o.pt--; o.pt == 0 {
		o.back.Close()
		o.back = nil
	}
}

// lazyFile is a read-only open of a lower file served through strata. The
// layer's file is opened on the first read: with the page cache kept across
// opens, most opens of a small file never read at all. Once the file is
// copied up, reads come from the copy, so that an old descriptor sees what
// was written through a new one (as with overlayfs), and a page-cache miss
// can never bring the lower bytes back.
type lazyFile struct {
	n       *node
	mu      sync.Mutex    // guards c and upper
	c       layer.Content // nil until the first read
	upper   bool          // c is the upper copy
	release func()        // if set, called at Release
}

var (
	_ = (fs.FileReader)((*lazyFile)(nil))
	_ = (fs.FileFlusher)((*lazyFile)(nil))
	_ = (fs.FileReleaser)((*lazyFile)(nil))
)

func (f *lazyFile) content(ctx context.Context) (layer.Content, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.c != nil && (f.upper || !f.n.upper.Load()) {
		return f.c, nil
	}
	if f.n.upper.Load() {
		var fd int
		err := f.n.withUpperParent(func(pfd int, name string) (err error) {
			fd, err = unix.Openat(pfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			return err
		})
		if err == nil {
			if f.c != nil {
				f.c.Close()
			}
			f.c, f.upper = os.NewFile(uintptr(fd), ""), true
			return f.c, nil
		}
		if f.c != nil {
			return f.c, nil // unlinked since: the bytes we have are the file's
		}
	}
	li, p := f.n.content()
	c, err := f.n.u.openLower(ctx, li, p)
	if err != nil {
		return nil, err
	}
	f.c = c
	return c, nil
}

// contextReaderAt is offered by content whose reads may go to the network:
// such a read carries the request's context (interrupts excluded, see the
// package doc), and its own timeouts bound it.
type contextReaderAt interface {
	ReadAtContext(ctx context.Context, p []byte, off int64) (int, error)
}

func (f *lazyFile) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	c, err := f.content(ctx)
	if err != nil {
		return nil, f.n.errno("read", "", err)
	}
	var k int
	if cr, ok := c.(contextReaderAt); ok {
		k, err = cr.ReadAtContext(context.WithoutCancel(ctx), dest, off)
	} else {
		k, err = c.ReadAt(dest, off)
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, f.n.errno("read", "", err)
	}
	return fuse.ReadResultData(dest[:k]), 0
}

func (f *lazyFile) Flush(ctx context.Context) syscall.Errno { return 0 }

func (f *lazyFile) Release(ctx context.Context) syscall.Errno {
	if f.release != nil {
		f.release()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.c != nil {
		return fs.ToErrno(f.c.Close())
	}
	return 0
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
	fd, err := n.listFd()
	if err != nil {
		return n.errno("fsync", "", err)
	}
	defer unix.Close(fd)
	return n.errno("fsync", "", unix.Fsync(fd))
}
