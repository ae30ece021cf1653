package unionfs

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/stratafs/strata/layer"
	"golang.org/x/sys/unix"
)

// tmpPrefix starts the names strata gives entries it is still building in
// the upper directory; they are renamed into place when complete and never
// shown in the merged tree.
const tmpPrefix = ".strata-tmp-"

// upperDir is the writable upper directory. Every path below it is resolved
// with openat2 beneath its root without following symlinks, so nothing a
// container writes (a symlink swapped in for a directory, say) can make
// strata touch a file outside it.
type upperDir struct {
	root string
	fd   int // O_PATH descriptor of root
}

func openUpper(root string) (*upperDir, error) {
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("upper directory %s: %w", root, err)
	}
	return &upperDir{root: root, fd: fd}, nil
}

func (u *upperDir) close() { unix.Close(u.fd) }

// openDir opens the upper directory at path ("" is the root) for *at calls
// and listing. The caller closes the descriptor.
func (u *upperDir) openDir(path string) (int, error) {
	return u.openAt(path, unix.O_RDONLY|unix.O_DIRECTORY, 0)
}

func (u *upperDir) openAt(path string, flags int, mode uint32) (int, error) {
	if path == "" {
		path = "."
	}
	how := unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Mode:    uint64(mode),
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
	for {
		fd, err := unix.Openat2(u.fd, path, &how)
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		return fd, err
	}
}

// upperEntry is what the upper directory holds under one name.
type upperEntry struct {
	st       unix.Stat_t
	whiteout bool
	opaque   bool // directories only
}

// statAt reads name in the open upper directory dirfd; ENOENT when absent.
func statAt(dirfd int, name string) (upperEntry, error) {
	var e upperEntry
	if err := unix.Fstatat(dirfd, name, &e.st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return e, err
	}
	kind, _ := layer.Classify(name, e.st.Mode, e.st.Rdev)
	e.whiteout = kind == layer.KindWhiteout && e.st.Mode&unix.S_IFMT == unix.S_IFCHR
	if e.st.Mode&unix.S_IFMT == unix.S_IFDIR {
		var buf [4]byte
		n, err := unix.Lgetxattr(procPath(dirfd, name), layer.OverlayOpaqueXattr, buf[:])
		e.opaque = err == nil && layer.IsOpaqueXattr(layer.OverlayOpaqueXattr, buf[:n])
	}
	return e, nil
}

// procPath names name inside the open directory dirfd for the path-only
// l*xattr calls, without resolving the directory's path again.
func procPath(dirfd int, name string) string {
	p := "/proc/self/fd/" + strconv.Itoa(dirfd)
	if name != "" {
		p += "/" + name
	}
	return p
}

// tmpName returns a fresh name for an entry under construction.
func tmpName() string {
	var b [8]byte
	rand.Read(b[:])
	return tmpPrefix + hex.EncodeToString(b[:])
}

func isTmpName(name string) bool { return strings.HasPrefix(name, tmpPrefix) }

// mkWhiteout makes a whiteout (char device 0/0) called name in dirfd.
func mkWhiteout(dirfd int, name string) error {
	return unix.Mknodat(dirfd, name, unix.S_IFCHR|0, 0)
}

// setOpaque marks the directory name in dirfd opaque.
func setOpaque(dirfd int, name string) error {
	return unix.Lsetxattr(procPath(dirfd, name), layer.OverlayOpaqueXattr, []byte("y"), 0)
}

// replaceWithWhiteout atomically turns name (a non-directory or an empty
// directory) into a whiteout: a whiteout is built under a temporary name and
// exchanged with it, then the old entry, now under the temporary name, goes.
func replaceWithWhiteout(dirfd int, name string, isDir bool) error {
	tmp := tmpName()
	if err := mkWhiteout(dirfd, tmp); err != nil {
		return err
	}
	if err := unix.Renameat2(dirfd, tmp, dirfd, name, unix.RENAME_EXCHANGE); err != nil {
		unix.Unlinkat(dirfd, tmp, 0)
		return err
	}
	flag := 0
	if isDir {
		flag = unix.AT_REMOVEDIR
	}
	return unix.Unlinkat(dirfd, tmp, flag)
}

// clearWhiteouts removes every whiteout from the upper directory name in
// dirfd, so that it can be removed or replaced. Anything else in it is an
// error: the caller has judged the directory empty in the merged view.
func clearWhiteouts(dirfd int, name string) error {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	names, err := readNames(fd)
	if err != nil {
		return err
	}
	for _, n := range names {
		e, err := statAt(fd, n)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return err
		}
		if !e.whiteout && !isTmpName(n) {
			return unix.ENOTEMPTY
		}
		flag := 0
		if e.st.Mode&unix.S_IFMT == unix.S_IFDIR {
			flag = unix.AT_REMOVEDIR
		}
		if err := unix.Unlinkat(fd, n, flag); err != nil && !errors.Is(err, unix.ENOENT) {
			return err
		}
	}
	return nil
}

// readNames lists the directory open as fd from its start.
func readNames(fd int) ([]string, error) {
	if _, err := unix.Seek(fd, 0, 0); err != nil {
		return nil, err
	}
	var names []string
	buf := make([]byte, 32<<10)
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return names, nil
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
}
