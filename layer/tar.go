package layer

import (
	"archive/tar"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// WriteTar writes the directory dir as an uncompressed layer tar stream:
// every entry below dir with its mode, owner, mtime, symlink target and
// device number, hard links as tar links to their first name. Deletion
// markers are written as the files they are on disk (OCI ".wh." files stay
// as they are), so dir should hold them in OCI form.
func WriteTar(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	seen := map[fileID]string{}
	err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		return addTarEntry(tw, p, filepath.ToSlash(rel), seen)
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// fileID names a file on disk, to find its hard links.
type fileID struct{ dev, ino uint64 }

func addTarEntry(tw *tar.Writer, p, rel string, seen map[fileID]string) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	target := ""
	if fi.Mode()&fs.ModeSymlink != 0 {
		if target, err = os.Readlink(p); err != nil {
			return err
		}
	}
	h, err := tar.FileInfoHeader(fi, target)
	if err != nil {
		return err
	}
	h.Name, h.Uname, h.Gname = rel, "", ""
	// Only mtime matters to an image; atime/ctime would force PAX records.
	h.AccessTime, h.ChangeTime = time.Time{}, time.Time{}
	if fi.IsDir() {
		h.Name += "/"
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && fi.Mode().IsRegular() && st.Nlink > 1 {
		key := fileID{uint64(st.Dev), st.Ino}
		if first, ok := seen[key]; ok {
			h.Typeflag, h.Linkname, h.Size = tar.TypeLink, first, 0
			return tw.WriteHeader(h)
		}
		seen[key] = rel
	}
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return nil
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(tw, f)
	return err
}
