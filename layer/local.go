package layer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Local is a layer that is an extracted directory on a local filesystem, in
// either deletion form (OCI ".wh." files or overlayfs whiteouts and opaque
// xattrs). Every path is resolved beneath the root without following
// symlinks, so a symlink inside the layer can never lead strata outside it.
type Local struct {
	root   string
	rootFd int // O_PATH descriptor of root; closed by Close

	linksOnce sync.Once // builds links on the first call of Links
	links     map[uint64][]string
	linksErr  error
}

var _ Layer = (*Local)(nil)

// OpenLocal opens the directory root as a layer. It fails with a clear error
// when root is missing, not a directory or not readable.
func OpenLocal(root string) (*Local, error) {
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", root, err)
	}
	l := &Local{root: root, rootFd: fd}
	// A layer we cannot list is useless; find out now, not at first lookup.
	if _, err := l.ReadDir(context.Background(), ""); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// Close releases the layer's root descriptor.
func (l *Local) Close() error { return unix.Close(l.rootFd) }

func (l *Local) String() string { return l.root }

// openBeneath opens p (a valid layer path) relative to the root, refusing
// symlinks and any escape from the root.
func (l *Local) openBeneath(p string, flags int) (int, error) {
	if !ValidPath(p) {
		return -1, fmt.Errorf("layer %s: %q: %w", l.root, p, ErrInvalidPath)
	}
	if p == "" {
		p = "."
	}
	how := unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
	for {
		fd, err := unix.Openat2(l.rootFd, p, &how)
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if err != nil {
			return -1, fmt.Errorf("layer %s: %s: %w", l.root, p, mapErr(err))
		}
		return fd, nil
	}
}

// mapErr adds the package sentinels to the errnos that have one; the errno
// stays in the chain for callers that want it.
func mapErr(err error) error {
	switch {
	case errors.Is(err, unix.ENOENT):
		return errors.Join(ErrNotExist, err)
	case errors.Is(err, unix.ENOTDIR), errors.Is(err, unix.ELOOP):
		// ELOOP: a symlink where a directory was needed.
		return errors.Join(ErrNotDir, err)
	}
	return err
}

// Root describes the root directory.
func (l *Local) Root(ctx context.Context) (Entry, error) {
	var st unix.Stat_t
	if err := unix.Fstat(l.rootFd, &st); err != nil {
		return Entry{}, fmt.Errorf("layer %s: %w", l.root, err)
	}
	e := entryFromStat("", &st)
	xs, err := readXattrs(procPath(l.rootFd, ""))
	if err != nil {
		return Entry{}, fmt.Errorf("layer %s: %w", l.root, err)
	}
	e.Xattrs = xs
	return e, nil
}

// ReadDir lists the directory at p, with deletion markers turned into
// TypeWhiteout entries and Dir.Opaque.
func (l *Local) ReadDir(ctx context.Context, p string) (Dir, error) {
	fd, err := l.openBeneath(p, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return Dir{}, err
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return Dir{}, fmt.Errorf("layer %s: list %q: %w", l.root, p, err)
	}
	var d Dir
	if d.Opaque, err = dirIsOpaque(procPath(fd, "")); err != nil {
		return Dir{}, fmt.Errorf("layer %s: %q: %w", l.root, p, err)
	}
	d.Entries = make([]Entry, 0, len(names))
	whiteouts := map[string]bool{}
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return Dir{}, err
		}
		var st unix.Stat_t
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue // removed while we listed: a local layer should not change, but need not crash us
			}
			return Dir{}, fmt.Errorf("layer %s: stat %q: %w", l.root, joinPath(p, name), err)
		}
		kind, applies := Classify(name, st.Mode, st.Rdev)
		switch kind {
		case KindHidden:
			continue
		case KindOpaque:
			d.Opaque = true
			continue
		case KindWhiteout:
			whiteouts[applies] = true
			continue
		}
		e, err := l.entryAt(fd, name, &st)
		if err != nil {
			return Dir{}, fmt.Errorf("layer %s: %q: %w", l.root, joinPath(p, name), err)
		}
		d.Entries = append(d.Entries, e)
	}
	// A name that is both present and whited out in the same layer (only an
	// odd tar can do that) is present: the layer's own entry wins.
	for name := range whiteouts {
		if !slices.ContainsFunc(d.Entries, func(e Entry) bool { return e.Name == name }) {
			d.Entries = append(d.Entries, Entry{Name: name, Type: TypeWhiteout})
		}
	}
	slices.SortFunc(d.Entries, func(a, b Entry) int { return strings.Compare(a.Name, b.Name) })
	return d, nil
}

func (l *Local) entryAt(dirfd int, name string, st *unix.Stat_t) (Entry, error) {
	e := entryFromStat(name, st)
	if e.Type == TypeSymlink {
		target, err := readlinkat(dirfd, name)
		if err != nil {
			return Entry{}, err
		}
		e.Target = target
	}
	xs, err := readXattrs(procPath(dirfd, name))
	if err != nil {
		return Entry{}, err
	}
	e.Xattrs = xs
	return e, nil
}

// Open opens the regular file at p. The result is an *os.File, so it offers
// the Fder upgrade for passthrough.
func (l *Local) Open(ctx context.Context, p string) (Content, error) {
	fd, err := l.openBeneath(p, unix.O_RDONLY|unix.O_NOFOLLOW)
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, fmt.Errorf("layer %s: open %q: not a regular file", l.root, p)
	}
	return os.NewFile(uintptr(fd), l.root+"/"+p), nil
}

func entryFromStat(name string, st *unix.Stat_t) Entry {
	return Entry{
		Name:  name,
		Type:  TypeOfMode(st.Mode),
		Perm:  st.Mode & 07777,
		UID:   st.Uid,
		GID:   st.Gid,
		Size:  st.Size,
		Mtime: st.Mtim.Nano(),
		Atime: st.Atim.Nano(),
		Ctime: st.Ctim.Nano(),
		Rdev:  st.Rdev,
		Nlink: uint32(st.Nlink),
		ID:    st.Ino,
	}
}

// procPath names the entry name inside the directory open as dirfd without
// resolving the directory's path again; the l* xattr calls on it do not
// follow a final symlink. An empty name means the directory itself, named
// through "." so that the l* calls reach it and not the /proc magic link.
func procPath(dirfd int, name string) string {
	if name == "" {
		name = "."
	}
	return "/proc/self/fd/" + strconv.Itoa(dirfd) + "/" + name
}

func joinPath(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

func readlinkat(dirfd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

func dirIsOpaque(path string) (bool, error) {
	for _, name := range []string{OverlayOpaqueXattr, OverlayUserOpaqueXattr} {
		var buf [8]byte
		n, err := unix.Lgetxattr(path, name, buf[:])
		if err == nil && IsOpaqueXattr(name, buf[:n]) {
			return true, nil
		}
		if err != nil && !errors.Is(err, unix.ENODATA) && !errors.Is(err, unix.ENOTSUP) && !errors.Is(err, unix.ERANGE) {
			return false, err
		}
	}
	return false, nil
}

// readXattrs returns the xattrs of path (not following a final symlink),
// without overlay bookkeeping; nil when there are none.
func readXattrs(path string) (map[string][]byte, error) {
	names, err := listXattrs(path)
	if err != nil || len(names) == 0 {
		return nil, err
	}
	xs := make(map[string][]byte, len(names))
	for _, name := range names {
		if IsPrivateXattr(name) {
			continue
		}
		v, err := getXattr(path, name)
		if errors.Is(err, unix.ENODATA) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("xattr %s: %w", name, err)
		}
		xs[name] = v
	}
	if len(xs) == 0 {
		return nil, nil
	}
	return xs, nil
}

func listXattrs(path string) ([]string, error) {
	for {
		size, err := unix.Llistxattr(path, nil)
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		if err != nil || size == 0 {
			return nil, err
		}
		buf := make([]byte, size)
		n, err := unix.Llistxattr(path, buf)
		if errors.Is(err, unix.ERANGE) {
			continue // grew between the two calls
		}
		if err != nil {
			return nil, err
		}
		var names []string
		for _, s := range strings.Split(string(buf[:n]), "\x00") {
			if s != "" {
				names = append(names, s)
			}
		}
		return names, nil
	}
}

func getXattr(path, name string) ([]byte, error) {
	for {
		size, err := unix.Lgetxattr(path, name, nil)
		if err != nil {
			return nil, err
		}
		buf := make([]byte, size)
		n, err := unix.Lgetxattr(path, name, buf)
		if errors.Is(err, unix.ERANGE) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}

// Links returns the paths of every entry of the layer that is a hard link
// to the file with the given ID. The first call walks the whole layer once
// and keeps an index of its hard links; it is needed only when a hard-linked
// file is changed.
func (l *Local) Links(ctx context.Context, id uint64) ([]string, error) {
	// The index is shared by every caller: one caller giving up must not
	// leave it failed for the others.
	l.linksOnce.Do(func() { l.links, l.linksErr = l.indexLinks(context.WithoutCancel(ctx)) })
	if l.linksErr != nil {
		return nil, l.linksErr
	}
	return l.links[id], nil
}

func (l *Local) indexLinks(ctx context.Context) (map[uint64][]string, error) {
	links := map[uint64][]string{}
	var walk func(dir string) error
	walk = func(dir string) error {
		d, err := l.ReadDir(ctx, dir)
		if err != nil {
			return err
		}
		for _, e := range d.Entries {
			p := joinPath(dir, e.Name)
			switch {
			case e.Type == TypeDir:
				if err := walk(p); err != nil {
					return err
				}
			case e.Nlink > 1 && e.Type != TypeWhiteout:
				links[e.ID] = append(links[e.ID], p)
			}
		}
		return nil
	}
	if err := walk(""); err != nil {
		return nil, err
	}
	return links, nil
}
