package images

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// paxXattr is the PAX record prefix for an extended attribute, as GNU tar,
// containerd and the estargz library write and read them.
const paxXattr = "SCHILY.xattr."

// LayerInfo describes one layer's uncompressed tar.
type LayerInfo struct {
	Name      string `json:"name"`
	CreatedBy string `json:"created_by"`
	TarBytes  int64  `json:"tar_bytes"`
	Entries   int    `json:"entries"`   // tar entries, whiteouts included
	Files     int    `json:"files"`     // regular files with content (not hard links)
	Bytes     int64  `json:"bytes"`     // bytes of those files
	Whiteouts int    `json:"whiteouts"` // .wh.NAME entries
}

// writeLayer writes the changes, read from the tree at root, as an
// uncompressed OCI layer tar at out. Hard links among the written entries
// become tar hard links to the first name written; devices, FIFOs, owners
// (numeric only) and extended attributes are kept; mtimes are kept to the
// second, the other times dropped.
func writeLayer(ctx context.Context, root string, changes []change, out string) (LayerInfo, error) {
	f, err := os.Create(out)
	if err != nil {
		return LayerInfo{}, err
	}
	defer f.Close()
	cw := &countWriter{w: bufio.NewWriterSize(f, 1<<20)}
	tw := tar.NewWriter(cw)
	info := LayerInfo{}
	links := map[[2]uint64]string{}
	for _, c := range changes {
		if err := ctx.Err(); err != nil {
			return LayerInfo{}, err
		}
		if err := writeChange(tw, root, c, links, &info); err != nil {
			return LayerInfo{}, fmt.Errorf("layer %s: %s: %w", filepath.Base(out), c.path, err)
		}
	}
	if err := tw.Close(); err != nil {
		return LayerInfo{}, err
	}
	if err := cw.w.(*bufio.Writer).Flush(); err != nil {
		return LayerInfo{}, err
	}
	info.TarBytes = cw.n
	return info, f.Close()
}

func writeChange(tw *tar.Writer, root string, c change, links map[[2]uint64]string, info *LayerInfo) error {
	info.Entries++
	if c.whiteout {
		info.Whiteouts++
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: c.path, Mode: 0o644,
			ModTime: time.Unix(0, 0), Format: tar.FormatPAX})
	}
	p := filepath.Join(root, filepath.FromSlash(c.path))
	st, err := lstat(p)
	if err != nil {
		return err
	}
	h, err := header(p, c.path, st)
	if err != nil {
		return err
	}
	if h.Typeflag == tar.TypeReg && st.Nlink > 1 {
		key := [2]uint64{st.Dev, st.Ino}
		if first, ok := links[key]; ok {
			h.Typeflag, h.Linkname, h.Size = tar.TypeLink, first, 0
			return tw.WriteHeader(h)
		}
		links[key] = c.path
	}
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	if h.Typeflag != tar.TypeReg {
		return nil
	}
	info.Files++
	info.Bytes += h.Size
	return copyFile(tw, p, h.Size)
}

// header builds the tar header of the entry at p from its lstat, with
// numeric owners only: an image's names are resolved in the container's
// /etc/passwd, never the builder's.
func header(p, name string, st *syscall.Stat_t) (*tar.Header, error) {
	h := &tar.Header{
		Name:    name,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: time.Unix(st.Mtim.Sec, 0),
		Format:  tar.FormatPAX,
	}
	switch st.Mode & syscall.S_IFMT {
	case syscall.S_IFREG:
		h.Typeflag, h.Size = tar.TypeReg, st.Size
	case syscall.S_IFDIR:
		h.Typeflag, h.Name = tar.TypeDir, name+"/"
	case syscall.S_IFLNK:
		target, err := os.Readlink(p)
		if err != nil {
			return nil, err
		}
		h.Typeflag, h.Linkname = tar.TypeSymlink, target
	case syscall.S_IFCHR, syscall.S_IFBLK:
		h.Typeflag = tar.TypeChar
		if st.Mode&syscall.S_IFMT == syscall.S_IFBLK {
			h.Typeflag = tar.TypeBlock
		}
		h.Devmajor, h.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	case syscall.S_IFIFO:
		h.Typeflag = tar.TypeFifo
	default:
		return nil, fmt.Errorf("%w: a socket or unknown file type (mode %o) cannot go into a layer", ErrBuild, st.Mode)
	}
	xattrs, err := readXattrs(p)
	if err != nil {
		return nil, err
	}
	for k, v := range xattrs {
		if h.PAXRecords == nil {
			h.PAXRecords = map[string]string{}
		}
		h.PAXRecords[paxXattr+k] = v
	}
	return h, nil
}

// readXattrs returns the entry's extended attributes, not following a
// symlink. A file system without xattr support has none.
func readXattrs(p string) (map[string]string, error) {
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(p, buf)
	if errors.Is(err, unix.ERANGE) {
		if n, err = unix.Llistxattr(p, nil); err == nil {
			buf = make([]byte, n)
			n, err = unix.Llistxattr(p, buf)
		}
	}
	if errors.Is(err, unix.ENOTSUP) {
		return nil, nil
	}
	if err != nil || n == 0 {
		return nil, err
	}
	out := map[string]string{}
	for _, k := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
		v, err := getXattr(p, k)
		if err != nil {
			return nil, fmt.Errorf("xattr %s: %w", k, err)
		}
		out[k] = v
	}
	return out, nil
}

func getXattr(p, k string) (string, error) {
	n, err := unix.Lgetxattr(p, k, nil)
	if err != nil {
		return "", err
	}
	buf := make([]byte, n)
	n, err = unix.Lgetxattr(p, k, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// copyFile writes exactly size bytes of the file: a file that changes
// size while the layer is written is an error, not a short tar entry.
func copyFile(w io.Writer, p string, size int64) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.Copy(w, io.LimitReader(f, size))
	if err == nil && n != size {
		err = fmt.Errorf("%w: file shrank from %d to %d bytes while being packed", ErrBuild, size, n)
	}
	return err
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
