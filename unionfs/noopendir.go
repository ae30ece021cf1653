package unionfs

import (
	"sync"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// noOpendir serves the directories of an open-less mount without an OPENDIR
// and a RELEASEDIR per opendir(2). It answers OPENDIR with ENOSYS; the
// kernel then opens directories by itself from then on, and caches their
// listings as if they had been opened with FOPEN_KEEP_CACHE and
// FOPEN_CACHE_DIR. The READDIR or READDIRPLUS requests that fill that cache
// come without a handle (go-fuse would answer them with an empty listing),
// so they are served here through a handle of noOpendir's own: opened at a
// directory's first request, used for the requests that follow at later
// offsets (a listing is read a page at a time; opening a handle lists the
// whole directory), and released when the listing has been read to its
// end. kernel overlayfs opens a lower directory for every readdir of it, so
// on an image mount under overlays this saves two round trips each time a
// directory is listed.
type noOpendir struct {
	fuse.RawFileSystem

	mu   sync.Mutex
	open map[uint64]*listing // directory node ID -> the handle kept for its listing
}

// listing is a directory handle noOpendir opened. Requests in flight hold
// it (refs); it is released once it is done (its listing read to the end,
// or evicted) and no request holds it, so that no request ever carries a
// handle already released.
type listing struct {
	fh   uint64
	refs int
	done bool
}

// maxOpenListings bounds the handles noOpendir keeps for listings that a
// reader stopped reading midway; past it, one is let go.
const maxOpenListings = 1024

func newNoOpendir(raw fuse.RawFileSystem) *noOpendir {
	return &noOpendir{RawFileSystem: raw, open: map[uint64]*listing{}}
}

func (n *noOpendir) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	return fuse.ENOSYS
}

func (n *noOpendir) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return n.withHandle(cancel, in, out, func(in *fuse.ReadIn) fuse.Status {
		return n.RawFileSystem.ReadDir(cancel, in, out)
	})
}

func (n *noOpendir) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return n.withHandle(cancel, in, out, func(in *fuse.ReadIn) fuse.Status {
		return n.RawFileSystem.ReadDirPlus(cancel, in, out)
	})
}

// withHandle runs read with a directory handle: the request's own if it
// has one (an OPENDIR before the first ENOSYS), else the one kept for the
// directory, opened if there is none. A read that adds no entry (the end of
// the listing) or fails lets the kept handle go.
func (n *noOpendir) withHandle(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList, read func(*fuse.ReadIn) fuse.Status) fuse.Status {
	if in.Fh != 0 {
		return read(in)
	}
	l, st := n.acquire(cancel, in.InHeader)
	if !st.Ok() {
		return st
	}
	own := *in
	own.Fh = l.fh
	before := out.Offset
	st = read(&own)
	n.put(in.NodeId, l, !st.Ok() || out.Offset == before)
	return st
}

// acquire returns the listing kept for the request's directory, opening a
// handle if there is none, and holds it for the request.
func (n *noOpendir) acquire(cancel <-chan struct{}, h fuse.InHeader) (*listing, fuse.Status) {
	n.mu.Lock()
	if l := n.open[h.NodeId]; l != nil {
		l.refs++
		n.mu.Unlock()
		return l, fuse.OK
	}
	n.mu.Unlock()
	var out fuse.OpenOut
	if st := n.RawFileSystem.OpenDir(cancel, &fuse.OpenIn{InHeader: h}, &out); !st.Ok() {
		return nil, st
	}
	var free []fuse.ReleaseIn
	defer func() { n.releaseAll(free) }()
	n.mu.Lock()
	defer n.mu.Unlock()
	if l := n.open[h.NodeId]; l != nil {
		// Another request opened one meanwhile: use that one.
		free = append(free, fuse.ReleaseIn{InHeader: h, Fh: out.Fh})
		l.refs++
		return l, fuse.OK
	}
	if len(n.open) >= maxOpenListings {
		for node, old := range n.open {
			delete(n.open, node)
			old.done = true
			if old.refs == 0 {
				free = append(free, fuse.ReleaseIn{InHeader: fuse.InHeader{NodeId: node}, Fh: old.fh})
			}
			break
		}
	}
	l := &listing{fh: out.Fh, refs: 1}
	n.open[h.NodeId] = l
	return l, fuse.OK
}

// put ends a request's hold on l; end says the listing is over. The last
// request to let go of a listing that is over releases its handle.
func (n *noOpendir) put(node uint64, l *listing, end bool) {
	n.mu.Lock()
	l.refs--
	if end && !l.done {
		l.done = true
		if n.open[node] == l {
			delete(n.open, node)
		}
	}
	release := l.done && l.refs == 0
	n.mu.Unlock()
	if release {
		n.RawFileSystem.ReleaseDir(&fuse.ReleaseIn{InHeader: fuse.InHeader{NodeId: node}, Fh: l.fh})
	}
}

func (n *noOpendir) releaseAll(free []fuse.ReleaseIn) {
	for i := range free {
		n.RawFileSystem.ReleaseDir(&free[i])
	}
}

// mountFS mounts root as fs.Mount does, through noOpendir for an open-less
// mount.
func mountFS(dir string, root fs.InodeEmbedder, opts *fs.Options, openless bool) (*fuse.Server, error) {
	raw := fs.NewNodeFS(root, opts)
	if openless {
		raw = newNoOpendir(raw)
	}
	srv, err := fuse.NewServer(raw, dir, &opts.MountOptions)
	if err != nil {
		return nil, err
	}
	go srv.Serve()
	if err := srv.WaitMount(); err != nil {
		return nil, err // as fs.Mount: the serve loop ends with the failed mount
	}
	return srv, nil
}
