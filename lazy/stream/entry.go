package stream

import (
	"archive/tar"
	"fmt"
	"math"
	"strings"
	"syscall"

	"github.com/stratafs/strata/layer"
	"golang.org/x/sys/unix"
)

// cleanName turns a tar name ("./usr/bin/", "etc/passwd") into a layer
// path. Only a leading "./" and a directory's trailing "/" are removed:
// absolute, unclean and escaping names are refused, never repaired.
func cleanName(raw string) (string, error) {
	if raw == "." || raw == "./" {
		return "", nil
	}
	p := strings.TrimSuffix(strings.TrimPrefix(raw, "./"), "/")
	if p == "" || len(p) >= syscall.PathMax || !layer.ValidPath(p) {
		return "", fmt.Errorf("name %q is not a clean relative path", raw)
	}
	return p, nil
}

// nodeOf reads a tar header into a node, refusing values no file can have.
// A regular file gets a placeholder file (its bytes are spooled next); a
// hard link returns its target's path and takes the target's node later.
func nodeOf(h *tar.Header) (n *node, link string, err error) {
	n = &node{}
	e := &n.e
	if h.Uid < 0 || h.Uid > math.MaxUint32 || h.Gid < 0 || h.Gid > math.MaxUint32 {
		return nil, "", fmt.Errorf("uid %d or gid %d out of range", h.Uid, h.Gid)
	}
	e.Perm, e.UID, e.GID, e.Nlink = uint32(h.Mode&0o7777), uint32(h.Uid), uint32(h.Gid), 1
	e.Mtime = unixNano(h.ModTime.UnixNano(), h.ModTime.IsZero())
	e.Atime, e.Ctime = e.Mtime, e.Mtime
	if !h.AccessTime.IsZero() {
		e.Atime = h.AccessTime.UnixNano()
	}
	if !h.ChangeTime.IsZero() {
		e.Ctime = h.ChangeTime.UnixNano()
	}
	if err := typeOf(n, h); err != nil {
		return nil, "", err
	}
	if h.Typeflag == tar.TypeLink {
		if link, err = cleanName(h.Linkname); err != nil || link == "" {
			return nil, "", fmt.Errorf("hard link target %q is not a clean relative path", h.Linkname)
		}
		return n, link, nil
	}
	if n.opaque, err = xattrsOf(e, h.PAXRecords); err != nil {
		return nil, "", err
	}
	return n, "", nil
}

func unixNano(ns int64, zero bool) int64 {
	if zero {
		return 0
	}
	return ns
}

func typeOf(n *node, h *tar.Header) error {
	e := &n.e
	switch h.Typeflag {
	case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse: // archive/tar expands sparse files
		e.Type, e.Size, n.file = layer.TypeReg, h.Size, &fileData{}
	case tar.TypeLink:
		e.Type = layer.TypeReg // until it takes its target's entry
	case tar.TypeDir:
		e.Type = layer.TypeDir
	case tar.TypeSymlink:
		t := h.Linkname
		if t == "" || len(t) >= syscall.PathMax || strings.IndexByte(t, 0) >= 0 {
			return fmt.Errorf("symlink target %q is not a valid target", t)
		}
		e.Type, e.Target = layer.TypeSymlink, t
	case tar.TypeChar, tar.TypeBlock:
		if h.Devmajor < 0 || h.Devmajor > math.MaxUint32 || h.Devminor < 0 || h.Devminor > math.MaxUint32 {
			return fmt.Errorf("device %d:%d out of range", h.Devmajor, h.Devminor)
		}
		e.Type, e.Rdev = layer.TypeChar, unix.Mkdev(uint32(h.Devmajor), uint32(h.Devminor))
		if h.Typeflag == tar.TypeBlock {
			e.Type = layer.TypeBlock
		}
	case tar.TypeFifo:
		e.Type = layer.TypeFIFO
	default:
		return fmt.Errorf("unsupported tar entry type %q", h.Typeflag)
	}
	return nil
}

// xattrsOf copies the entry's xattrs (PAX "SCHILY.xattr." records) into e,
// without overlay bookkeeping, which the merged tree never shows; opaque
// reports a directory marked opaque in overlayfs form.
func xattrsOf(e *layer.Entry, recs map[string]string) (opaque bool, err error) {
	const prefix = "SCHILY.xattr."
	for k, v := range recs {
		name, ok := strings.CutPrefix(k, prefix)
		if !ok {
			continue
		}
		if name == "" || len(name) > 255 || strings.IndexByte(name, 0) >= 0 || len(v) > 64<<10 {
			return false, fmt.Errorf("xattr %q (%d bytes) is not a valid xattr", name, len(v))
		}
		if layer.IsPrivateXattr(name) {
			opaque = opaque || (e.Type == layer.TypeDir && layer.IsOpaqueXattr(name, []byte(v)))
			continue
		}
		if e.Xattrs == nil {
			e.Xattrs = map[string][]byte{}
		}
		e.Xattrs[name] = []byte(v)
	}
	return opaque, nil
}
