package unionfs

import (
	"context"
	"errors"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/stratafs/strata/layer"
	"golang.org/x/sys/unix"
)

// union is the state shared by every node of one mount.
type union struct {
	layers []layer.Layer
	upper  *upperDir // nil: read-only mount
	inos   *inoTable
	opts   options
	root   *node
	// renameMu is held for writing by a rename that copies a subtree up, and
	// for reading by every other change to the upper directory.
	renameMu sync.RWMutex
	// kfiles counts the nodes holding a kfile (see openless.go).
	kfiles atomic.Int64
	// noXattrs: a read-only mount whose layers all say no entry has an
	// extended attribute (see xattr.go).
	noXattrs bool
	// feed queues the files to hand to the page cache (see feed.go).
	feed feedQ
}

// node is one merged entry. See the package doc for the model.
type node struct {
	fs.Inode
	u *union

	// Where the entry lives in the lower layers. Fixed when the node is
	// made, except ldirs, which a subtree copy-up clears (under mu).
	lower  *layer.Entry // topmost lower entry; nil for an upper-only entry
	llayer int          // layer holding lower
	lsrc   *lowerSrc    // where lower's bytes are, if not at lpath in llayer
	lpath  string       // the entry's path in the lower layers
	ldirs  []int        // directories: contributing lower layers, top-down

	upper atomic.Bool // the entry exists in the upper directory at its current path

	// ufd is 1 + an O_PATH descriptor of the directory's upper directory,
	// or 0 before first use. It follows the directory through renames, and
	// is closed when the kernel forgets the node.
	ufd  atomic.Int64
	fdMu sync.Mutex // serialises opening ufd

	mu      sync.Mutex    // guards kids, ldirs, io, ioLower; serialises copy-up
	kids    *lowerListing // directories: the merged lower children, built on first use
	io      ioMode        // regular files: how the kernel does I/O (see decideIO)
	ioLower bool          // io is passthrough with the lower file as backing

	// lowerOpens counts the open handles of a lower file opened for
	// passthrough (see openLower), which the kernel will not mix.
	lowerOpens lowerOpens

	// kfile serves the node's reads on an open-less mount (see openless.go).
	kfile atomic.Pointer[lazyFile]
	// fed: the node was queued to feed the page cache (see feed.go).
	fed atomic.Bool
	// feedMu is held by a feed of the page cache and by the copy-up's
	// marking of upper, which exclude each other (see feed.go).
	feedMu sync.Mutex
}

var _ = (fs.InodeEmbedder)((*node)(nil))

// path returns the node's path below the mount root, and false for a node
// no longer reachable by name (unlinked while open).
func (n *node) path() (string, bool) {
	root := n.u.root.EmbeddedInode()
	cur := n.EmbeddedInode()
	var segs []string
	for cur != root {
		name, parent := cur.Parent()
		if parent == nil {
			return "", false
		}
		segs = append(segs, name)
		cur = parent
	}
	for i, j := 0, len(segs)-1; i < j; i, j = i+1, j-1 {
		segs[i], segs[j] = segs[j], segs[i]
	}
	return strings.Join(segs, "/"), true
}

// content returns the layer and path of a lower file's bytes.
func (n *node) content() (int, string) {
	if n.lsrc != nil {
		return n.lsrc.layer, n.lsrc.path
	}
	return n.llayer, n.lpath
}

func joinPath(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// ino is the node's inode number.
func (n *node) ino() uint64 { return n.StableAttr().Ino }

// lowerKids returns the directory's merged lower children (nil when it has
// no lower part), reading the lower layers on first use.
func (n *node) lowerKids(ctx context.Context) (*lowerListing, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.kids != nil || len(n.ldirs) == 0 {
		return n.kids, nil
	}
	kids, err := mergeLower(ctx, n.u.layers, n.ldirs, n.lpath)
	if err != nil {
		return nil, err
	}
	n.kids = kids
	return kids, nil
}

// childState is what one name in a directory resolves to.
type childState struct {
	name     string
	path     string // merged path of the child
	lower    lowerChild
	hasLower bool // the lower layers hold the name (it may be hidden by the upper)
	up       upperEntry
	hasUpper bool // the upper holds a non-whiteout entry
	whiteout bool // the upper holds a whiteout
}

// exists reports whether the name is visible in the merged tree.
func (c *childState) exists() bool { return c.hasUpper || (c.hasLower && !c.whiteout) }

// lowerVisible reports whether removing the upper entry would expose a lower
// one, so that a removal must leave a whiteout.
func (c *childState) lowerVisible() bool { return c.hasLower && !c.whiteout }

func (c *childState) isDir() bool {
	if c.hasUpper {
		return c.up.st.Mode&unix.S_IFMT == unix.S_IFDIR
	}
	return c.lower.entry.Type == layer.TypeDir
}

// resolve looks name up in the directory n.
func (n *node) resolve(ctx context.Context, name string) (childState, error) {
	dir, ok := n.path()
	if !ok {
		return childState{}, unix.ENOENT
	}
	cs := childState{name: name, path: joinPath(dir, name)}
	kids, err := n.lowerKids(ctx)
	if err != nil {
		return cs, err
	}
	cs.lower, cs.hasLower = kids.get(name)
	if !n.upper.Load() {
		return cs, nil
	}
	fd, err := n.upperDirFd()
	if err != nil {
		return cs, err
	}
	up, err := statAt(fd, name)
	switch {
	case errors.Is(err, unix.ENOENT):
	case err != nil:
		return cs, err
	case up.whiteout:
		cs.whiteout = true
	default:
		cs.up, cs.hasUpper = up, true
	}
	return cs, nil
}

// newChild makes the node for a visible name, and its stable attributes.
func (n *node) newChild(cs *childState) (*node, fs.StableAttr) {
	c := &node{u: n.u, lpath: cs.path}
	if cs.hasUpper {
		c.upper.Store(true)
		mode := cs.up.st.Mode & unix.S_IFMT
		if mode == unix.S_IFDIR && !cs.up.opaque && cs.lowerVisible() && cs.lower.entry.Type == layer.TypeDir {
			c.lower, c.llayer, c.ldirs = cs.lower.entry, cs.lower.layer, cs.lower.dirs
		}
		return c, fs.StableAttr{Mode: mode, Ino: n.u.inos.get(inoKey{upperLayer, cs.up.st.Ino})}
	}
	c.lower, c.llayer, c.ldirs, c.lsrc = cs.lower.entry, cs.lower.layer, cs.lower.dirs, cs.lower.src
	return c, fs.StableAttr{
		Mode: cs.lower.entry.Type.Mode(),
		Ino:  n.u.inos.get(inoKey{cs.lower.layer, cs.lower.entry.ID}),
	}
}

var _ = (fs.NodeLookuper)((*node)(nil))

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	cs, err := n.resolve(ctx, name)
	if err != nil {
		return nil, n.errno("lookup", name, err)
	}
	if !cs.exists() || isTmpName(name) {
		return nil, syscall.ENOENT
	}
	child, stable := n.newChild(&cs)
	ch := n.NewInode(ctx, child, stable)
	// NewInode may return an existing node with this number: describe that one.
	cn := ch.Operations().(*node)
	if errno := cn.attrFromState(&cs, &out.Attr); errno != 0 {
		return nil, errno
	}
	cn.offerFeed()
	return ch, 0
}

// attrFromState fills out from an already resolved name, sparing a stat.
func (n *node) attrFromState(cs *childState, out *fuse.Attr) syscall.Errno {
	if cs.hasUpper {
		fillFromStat(out, &cs.up.st)
	} else {
		fillFromEntry(out, cs.lower.entry)
	}
	out.Ino = n.ino()
	return 0
}

var _ = (fs.NodeGetattrer)((*node)(nil))

// Getattr describes the node; with a handle on its upper file, from that
// file (an fstat, which sees writes through the handle). A handle on a
// lower file's local bytes says nothing of the node: go-fuse hands one to
// a GETATTR that came without, and the kernel sends those while a
// passthrough open is up.
func (n *node) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if f := asFile(fh); f != nil && !f.lower {
		var st unix.Stat_t
		if err := unix.Fstat(int(f.f.Fd()), &st); err != nil {
			return n.errno("fstat", "", err)
		}
		fillFromStat(&out.Attr, &st)
		out.Ino = n.ino()
		return 0
	}
	return n.getattr(ctx, &out.Attr)
}

// getattr describes the node from where it lives now.
func (n *node) getattr(ctx context.Context, out *fuse.Attr) syscall.Errno {
	if n.upper.Load() {
		st, err := n.statUpper()
		if err != nil {
			return n.errno("stat", "", err)
		}
		fillFromStat(out, &st)
	} else if n.lower != nil {
		fillFromEntry(out, n.lower)
	} else {
		return syscall.ENOENT
	}
	out.Ino = n.ino()
	return 0
}

// statUpper stats the node's upper entry.
func (n *node) statUpper() (unix.Stat_t, error) {
	var st unix.Stat_t
	err := n.withUpperParent(func(pfd int, name string) error {
		return unix.Fstatat(pfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	})
	return st, err
}

// withUpperParent runs fn with the node's upper parent directory open and
// the node's name in it.
// For the root that is the upper root itself and ".".
func (n *node) withUpperParent(fn func(pfd int, name string) error) error {
	if n == n.u.root {
		return fn(n.u.upper.fd, ".")
	}
	name, parent := n.Parent()
	if parent == nil {
		return unix.ENOENT
	}
	pfd, err := parent.Operations().(*node).upperDirFd()
	if err != nil {
		return err
	}
	return fn(pfd, name)
}

// withUpperDir runs fn with the directory n's upper directory.
func (n *node) withUpperDir(fn func(pfd int) error) error {
	fd, err := n.upperDirFd()
	if err != nil {
		return err
	}
	return fn(fd)
}

// upperDirFd returns an O_PATH descriptor of the directory's upper
// directory, for *at calls. It stays owned by the node: callers never close it.
func (n *node) upperDirFd() (int, error) {
	if n == n.u.root {
		return n.u.upper.fd, nil
	}
	if v := n.ufd.Load(); v != 0 {
		return int(v - 1), nil
	}
	n.fdMu.Lock()
	defer n.fdMu.Unlock()
	if v := n.ufd.Load(); v != 0 {
		return int(v - 1), nil
	}
	p, ok := n.path()
	if !ok {
		return -1, unix.ENOENT
	}
	fd, err := n.u.upper.openAt(p, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return -1, err
	}
	n.ufd.Store(int64(fd) + 1)
	return fd, nil
}

var _ = (fs.NodeOnForgetter)((*node)(nil))

// OnForget closes the node's upper directory descriptor and the handle of
// its open-less reads: the kernel holds no reference to the node any more,
// so no request can use them.
func (n *node) OnForget() {
	if v := n.ufd.Swap(0); v != 0 {
		unix.Close(int(v - 1))
	}
	n.dropKernelFile()
}

// listFd opens the directory's upper directory for reading its entries.
func (n *node) listFd() (int, error) {
	fd, err := n.upperDirFd()
	if err != nil {
		return -1, err
	}
	return unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
}

func fillFromEntry(out *fuse.Attr, e *layer.Entry) {
	out.Mode = e.Type.Mode() | e.Perm
	out.Size = uint64(e.Size)
	if e.Type != layer.TypeReg && e.Type != layer.TypeSymlink && e.Type != layer.TypeDir {
		out.Size = 0
	}
	if e.Type == layer.TypeSymlink {
		out.Size = uint64(len(e.Target))
	}
	out.Blocks = (out.Size + 511) / 512
	out.Blksize = 4096
	out.Nlink = max(e.Nlink, 1)
	out.Owner = fuse.Owner{Uid: e.UID, Gid: e.GID}
	out.Rdev = uint32(e.Rdev)
	out.Atime, out.Atimensec = splitNano(e.Atime)
	out.Mtime, out.Mtimensec = splitNano(e.Mtime)
	out.Ctime, out.Ctimensec = splitNano(e.Ctime)
}

func fillFromStat(out *fuse.Attr, st *unix.Stat_t) {
	out.Mode = st.Mode
	out.Size = uint64(st.Size)
	out.Blocks = uint64(st.Blocks)
	out.Blksize = uint32(st.Blksize)
	out.Nlink = uint32(st.Nlink)
	out.Owner = fuse.Owner{Uid: st.Uid, Gid: st.Gid}
	out.Rdev = uint32(st.Rdev)
	out.Atime, out.Atimensec = uint64(st.Atim.Sec), uint32(st.Atim.Nsec)
	out.Mtime, out.Mtimensec = uint64(st.Mtim.Sec), uint32(st.Mtim.Nsec)
	out.Ctime, out.Ctimensec = uint64(st.Ctim.Sec), uint32(st.Ctim.Nsec)
}

func splitNano(ns int64) (uint64, uint32) {
	sec, nsec := ns/1e9, ns%1e9
	if nsec < 0 {
		sec, nsec = sec-1, nsec+1e9
	}
	return uint64(sec), uint32(nsec)
}

var _ = (fs.NodeOpendirHandler)((*node)(nil))

// OpendirHandle lists the merged directory once per open, and lets the
// kernel cache the listing (FOPEN_CACHE_DIR): every change to the directory
// goes through the kernel, which then drops its cached copy itself.
func (n *node) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	ents, err := n.list(ctx)
	if err != nil {
		return nil, 0, n.errno("readdir", "", err)
	}
	out := make([]fuse.DirEntry, 0, len(ents)+2)
	out = append(out, fuse.DirEntry{Name: ".", Mode: syscall.S_IFDIR, Ino: n.ino()})
	parentIno := n.ino()
	if _, p := n.Parent(); p != nil {
		parentIno = p.StableAttr().Ino
	}
	out = append(out, fuse.DirEntry{Name: "..", Mode: syscall.S_IFDIR, Ino: parentIno})
	out = append(out, ents...)
	return fs.NewListDirStream(out), fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE, 0
}

// list returns the merged children of the directory, sorted by name.
func (n *node) list(ctx context.Context) ([]fuse.DirEntry, error) {
	kids, err := n.lowerKids(ctx)
	if err != nil {
		return nil, err
	}
	if !n.upper.Load() {
		// The lower layers' merged listing, already sorted: the whole of
		// a read-only mount's directories, and most of a container's.
		var out []fuse.DirEntry
		if kids != nil {
			out = make([]fuse.DirEntry, 0, len(kids.names))
			for _, name := range kids.names {
				out = append(out, n.lowerDirEntry(kids, name))
			}
		}
		return out, nil
	}
	byName := map[string]fuse.DirEntry{}
	hidden := map[string]bool{}
	if err := n.listUpper(byName, hidden); err != nil {
		return nil, err
	}
	if kids != nil {
		for _, name := range kids.names {
			if hidden[name] {
				continue
			}
			if _, ok := byName[name]; ok {
				continue
			}
			byName[name] = n.lowerDirEntry(kids, name)
		}
	}
	out := make([]fuse.DirEntry, 0, len(byName))
	for _, e := range byName {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// lowerDirEntry is the directory entry of a lower child.
func (n *node) lowerDirEntry(kids *lowerListing, name string) fuse.DirEntry {
	c := kids.children[name]
	return fuse.DirEntry{Name: name, Mode: c.entry.Type.Mode(), Ino: n.u.inos.get(inoKey{c.layer, c.entry.ID})}
}

// listUpper adds the upper directory's entries to byName and its whiteouts
// to hidden.
func (n *node) listUpper(byName map[string]fuse.DirEntry, hidden map[string]bool) error {
	fd, err := n.listFd()
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	names, err := readNames(fd)
	if err != nil {
		return err
	}
	for _, name := range names {
		if name == "." || name == ".." || isTmpName(name) {
			continue
		}
		e, err := statAt(fd, name)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return err
		}
		if e.whiteout {
			hidden[name] = true
			continue
		}
		byName[name] = fuse.DirEntry{Name: name, Mode: e.st.Mode & unix.S_IFMT, Ino: n.u.inos.get(inoKey{upperLayer, e.st.Ino})}
	}
	return nil
}

var _ = (fs.NodeReadlinker)((*node)(nil))

func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	if !n.upper.Load() {
		if n.lower == nil || n.lower.Type != layer.TypeSymlink {
			return nil, syscall.EINVAL
		}
		return []byte(n.lower.Target), 0
	}
	var target []byte
	err := n.withUpperParent(func(pfd int, name string) error {
		buf := make([]byte, unix.PathMax)
		k, err := unix.Readlinkat(pfd, name, buf)
		target = buf[:max(k, 0)]
		return err
	})
	if err != nil {
		return nil, n.errno("readlink", "", err)
	}
	return target, 0
}

var _ = (fs.NodeStatfser)((*node)(nil))

func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	if n.u.upper == nil {
		// Layers are read-only and have no free space to speak of.
		out.Bsize, out.Frsize, out.NameLen = 4096, 4096, 255
		return 0
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(n.u.upper.fd, &st); err != nil {
		return n.errno("statfs", "", err)
	}
	out.FromStatfsT(&syscall.Statfs_t{
		Blocks: st.Blocks, Bfree: st.Bfree, Bavail: st.Bavail, Files: st.Files, Ffree: st.Ffree,
		Bsize: st.Bsize, Namelen: st.Namelen, Frsize: st.Frsize,
	})
	return 0
}
