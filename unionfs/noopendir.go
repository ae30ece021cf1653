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
	open map[uint64]uint64 // directory node ID -> the handle opened for its listing
}

// maxOpenListings bounds the handles noOpendir keeps for listings that a
// reader stopped reading midway; past it, one is released.
const maxOpenListings = 1024

func newNoOpendir(raw fuse.RawFileSystem) *noOpendir {
	return &noOpendir{RawFileSystem: raw, open: map[uint64]uint64{}}
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
// the listing) or fails releases the kept handle.
func (n *noOpendir) withHandle(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList, read func(*fuse.ReadIn) fuse.Status) fuse.Status {
	if in.Fh != 0 {
		return read(in)
	}
	fh, st := n.handle(cancel, in.InHeader)
	if !st.Ok() {
		return st
	}
	own := *in
	own.Fh = fh
	before := out.Offset
	st = read(&own)
	if !st.Ok() || out.Offset == before {
		n.release(in.InHeader, fh)
	}
	return st
}

// handle returns the handle kept for the directory the request is about,
// opening one if there is none.
func (n *noOpendir) handle(cancel <-chan struct{}, h fuse.InHeader) (uint64, fuse.Status) {
	n.mu.Lock()
	fh, ok := n.open[h.NodeId]
	n.mu.Unlock()
	if ok {
		return fh, fuse.OK
	}
	var out fuse.OpenOut
	if st := n.RawFileSystem.OpenDir(cancel, &fuse.OpenIn{InHeader: h}, &out); !st.Ok() {
		return 0, st
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if kept, ok := n.open[h.NodeId]; ok {
		// Another request opened one meanwhile: keep that one.
		n.RawFileSystem.ReleaseDir(&fuse.ReleaseIn{InHeader: h, Fh: out.Fh})
		return kept, fuse.OK
	}
	if len(n.open) >= maxOpenListings {
		for node, old := range n.open {
			delete(n.open, node)
			n.RawFileSystem.ReleaseDir(&fuse.ReleaseIn{InHeader: fuse.InHeader{NodeId: node}, Fh: old})
			break
		}
	}
	n.open[h.NodeId] = out.Fh
	return out.Fh, fuse.OK
}

// release gives back the handle kept for the request's directory, if it is
// still fh.
func (n *noOpendir) release(h fuse.InHeader, fh uint64) {
	n.mu.Lock()
	kept, ok := n.open[h.NodeId]
	if ok && kept == fh {
		delete(n.open, h.NodeId)
	}
	n.mu.Unlock()
	if ok && kept == fh {
		n.RawFileSystem.ReleaseDir(&fuse.ReleaseIn{InHeader: h, Fh: fh})
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
