package unionfs

import (
	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// noOpendir serves the directories of an open-less mount without an OPENDIR
// and a RELEASEDIR per opendir(2). It answers OPENDIR with ENOSYS; the
// kernel then opens directories by itself from then on, and caches their
// listings as if they had been opened with FOPEN_KEEP_CACHE and
// FOPEN_CACHE_DIR. The READDIR or READDIRPLUS that fills that cache comes
// without a handle (go-fuse would answer it with an empty listing), so it
// is served here through a handle opened and released on the spot, at the
// offset the kernel asks for. kernel overlayfs opens a lower directory for
// every readdir of it, so on an image mount under overlays this saves two
// round trips each time a directory is listed.
type noOpendir struct {
	fuse.RawFileSystem
}

func (n noOpendir) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	return fuse.ENOSYS
}

func (n noOpendir) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return n.withHandle(cancel, in, func(in *fuse.ReadIn) fuse.Status {
		return n.RawFileSystem.ReadDir(cancel, in, out)
	})
}

func (n noOpendir) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return n.withHandle(cancel, in, func(in *fuse.ReadIn) fuse.Status {
		return n.RawFileSystem.ReadDirPlus(cancel, in, out)
	})
}

// withHandle runs read with a directory handle: the request's own if it
// has one (an OPENDIR before the first ENOSYS), else one opened for it.
func (n noOpendir) withHandle(cancel <-chan struct{}, in *fuse.ReadIn, read func(*fuse.ReadIn) fuse.Status) fuse.Status {
	if in.Fh != 0 {
		return read(in)
	}
	var open fuse.OpenOut
	if st := n.RawFileSystem.OpenDir(cancel, &fuse.OpenIn{InHeader: in.InHeader}, &open); !st.Ok() {
		return st
	}
	defer n.RawFileSystem.ReleaseDir(&fuse.ReleaseIn{InHeader: in.InHeader, Fh: open.Fh})
	own := *in
	own.Fh = open.Fh
	return read(&own)
}

// mountFS mounts root as fs.Mount does, through noOpendir for an open-less
// mount.
func mountFS(dir string, root fs.InodeEmbedder, opts *fs.Options, openless bool) (*fuse.Server, error) {
	raw := fs.NewNodeFS(root, opts)
	if openless {
		raw = noOpendir{raw}
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
