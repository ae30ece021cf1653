package images

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Extract applies one uncompressed layer tar onto the directory root, as
// a container runtime unpacks an image layer by layer: ".wh.NAME" deletes
// NAME, ".wh..wh..opq" empties its directory of what earlier layers put
// there, a directory merges into an existing one, any other entry replaces
// what was at its path. Owners, modes, times, devices, hard links and
// extended attributes are restored (it needs root, as the images do).
//
// Names are confined to root: absolute names are taken relative to it, a
// name with ".." or one reached through a symlink is an error
// (ErrBadLayer), so a layer cannot write outside root.
func Extract(ctx context.Context, root string, layerTar io.Reader) error {
	x := &extractor{root: root, created: map[string]bool{}, safe: map[string]bool{"": true}}
	tr := tar.NewReader(layerTar)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("extract: %w: %v", ErrBadLayer, err)
		}
		if err := x.apply(h, tr); err != nil {
			return fmt.Errorf("extract %s: %w", h.Name, err)
		}
	}
	return x.finishDirs()
}

// ErrBadLayer: a layer tar that is corrupt or names a path outside the
// root it is extracted to.
var ErrBadLayer = errors.New("bad layer tar")

type extractor struct {
	root    string
	created map[string]bool // paths this layer wrote: an opaque marker keeps them
	safe    map[string]bool // directories checked to hold no symlink on the way from root
	dirs    []dirTime       // directory mtimes, set once their contents are in
}

type dirTime struct {
	rel   string
	mtime time.Time
}

func (x *extractor) apply(h *tar.Header, r io.Reader) error {
	rel, err := cleanName(h.Name)
	if err != nil || rel == "" {
		return err // the root entry ("./") carries nothing to apply
	}
	dir, base := path.Split(rel)
	dir = strings.TrimSuffix(dir, "/")
	if err := x.checkDir(dir); err != nil {
		return err
	}
	switch {
	case base == opaqueWhiteout:
		return x.opaque(dir)
	case strings.HasPrefix(base, whiteoutPrefix):
		victim := strings.TrimPrefix(base, whiteoutPrefix)
		if victim == "" || victim == "." || victim == ".." {
			return fmt.Errorf("%w: whiteout %q names no entry", ErrBadLayer, h.Name)
		}
		return x.remove(path.Join(dir, victim))
	}
	if err := x.makeRoom(rel, h.Typeflag == tar.TypeDir); err != nil {
		return err
	}
	x.created[rel] = true
	if err := x.create(rel, h, r); err != nil {
		return err
	}
	if h.Typeflag == tar.TypeLink {
		return nil // a hard link shares its target's inode and metadata
	}
	return x.setMeta(rel, h)
}

// cleanName turns a tar name into a relative slash path, refusing "..".
func cleanName(name string) (string, error) {
	name = strings.TrimLeft(name, "/")
	for _, c := range strings.Split(name, "/") {
		if c == ".." {
			return "", fmt.Errorf("%w: %q leaves the root", ErrBadLayer, name)
		}
	}
	rel := path.Clean(name)
	if rel == "." {
		rel = ""
	}
	return rel, nil
}

func (x *extractor) abs(rel string) string { return filepath.Join(x.root, filepath.FromSlash(rel)) }

// checkDir creates the directories leading to dir if missing and refuses a
// path that goes through a symlink.
func (x *extractor) checkDir(dir string) error {
	if x.safe[dir] {
		return nil
	}
	if err := x.checkDir(parentOf(dir)); err != nil {
		return err
	}
	p := x.abs(dir)
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		err = os.Mkdir(p, 0o755)
	} else if err == nil && !fi.IsDir() {
		err = fmt.Errorf("%w: %q is not a directory (a symlink is never followed)", ErrBadLayer, dir)
	}
	if err != nil {
		return err
	}
	x.safe[dir] = true
	return nil
}

func parentOf(rel string) string {
	if d := path.Dir(rel); d != "." {
		return d
	}
	return ""
}

// opaque removes from dir everything this layer did not write itself.
func (x *extractor) opaque(dir string) error {
	ents, err := os.ReadDir(x.abs(dir))
	if err != nil {
		return err
	}
	for _, e := range ents {
		rel := path.Join(dir, e.Name())
		if !x.created[rel] {
			if err := x.remove(rel); err != nil {
				return err
			}
		}
	}
	return nil
}

// makeRoom clears rel unless both it and the new entry are directories.
func (x *extractor) makeRoom(rel string, isDir bool) error {
	fi, err := os.Lstat(x.abs(rel))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil || (isDir && fi.IsDir()) {
		return err
	}
	return x.remove(rel)
}

// remove deletes rel and forgets the directories checked below it, since
// a symlink may take their place.
func (x *extractor) remove(rel string) error {
	for k := range x.safe {
		if k == rel || strings.HasPrefix(k, rel+"/") {
			delete(x.safe, k)
		}
	}
	return os.RemoveAll(x.abs(rel))
}

func (x *extractor) create(rel string, h *tar.Header, r io.Reader) error {
	p := x.abs(rel)
	switch h.Typeflag {
	case tar.TypeDir:
		if err := os.Mkdir(p, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		x.dirs = append(x.dirs, dirTime{rel, h.ModTime})
		return nil
	case tar.TypeReg, tar.TypeRegA: //nolint:staticcheck // old tars still use TypeRegA
		return writeNew(p, r)
	case tar.TypeSymlink:
		return os.Symlink(h.Linkname, p)
	case tar.TypeLink:
		target, err := cleanName(h.Linkname)
		if err == nil {
			err = x.checkDir(parentOf(target))
		}
		if err != nil {
			return err
		}
		return os.Link(x.abs(target), p)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		mode := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[h.Typeflag]
		return unix.Mknod(p, mode|0o600, int(unix.Mkdev(uint32(h.Devmajor), uint32(h.Devminor))))
	}
	return fmt.Errorf("%w: entry type %q not supported", ErrBadLayer, h.Typeflag)
}

func writeNew(p string, r io.Reader) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// setMeta restores owner, then mode (chown clears set-id bits), xattrs and
// mtime. A directory's mtime waits for finishDirs: adding its children
// would change it again.
func (x *extractor) setMeta(rel string, h *tar.Header) error {
	p := x.abs(rel)
	if err := os.Lchown(p, h.Uid, h.Gid); err != nil {
		return err
	}
	if h.Typeflag != tar.TypeSymlink {
		if err := unix.Chmod(p, uint32(h.Mode&0o7777)); err != nil {
			return &fs.PathError{Op: "chmod", Path: p, Err: err}
		}
	}
	for k, v := range h.PAXRecords {
		if name, ok := strings.CutPrefix(k, paxXattr); ok {
			if err := unix.Lsetxattr(p, name, []byte(v), 0); err != nil {
				return fmt.Errorf("xattr %s: %w", name, err)
			}
		}
	}
	if h.Typeflag == tar.TypeDir {
		return nil
	}
	return setMtime(p, h.ModTime)
}

func setMtime(p string, t time.Time) error {
	ts := []unix.Timespec{unix.NsecToTimespec(t.UnixNano()), unix.NsecToTimespec(t.UnixNano())}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &fs.PathError{Op: "utimes", Path: p, Err: err}
	}
	return nil
}

// finishDirs sets directory mtimes, deepest first.
func (x *extractor) finishDirs() error {
	slices.SortFunc(x.dirs, func(a, b dirTime) int { return strings.Count(b.rel, "/") - strings.Count(a.rel, "/") })
	for _, d := range x.dirs {
		if err := setMtime(x.abs(d.rel), d.mtime); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}
