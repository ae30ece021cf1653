package lazy

import (
	"fmt"
	"math"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/stratafs/strata/layer"
	"golang.org/x/sys/unix"
)

// tocTypes maps estargz entry types to layer types; a hard link takes its
// target's type once resolved.
var tocTypes = map[string]layer.Type{
	"dir": layer.TypeDir, "reg": layer.TypeReg, "symlink": layer.TypeSymlink,
	"char": layer.TypeChar, "block": layer.TypeBlock, "fifo": layer.TypeFIFO,
	"hardlink": layer.TypeReg,
}

// entryOf reads the attributes of a TOC entry, refusing values no file can
// have. opaque reports a directory marked opaque in overlayfs form (an
// xattr), which some converted layers carry.
func entryOf(te *estargz.TOCEntry) (e layer.Entry, opaque bool, err error) {
	e = layer.Entry{Perm: uint32(te.Mode & 0o7777), Nlink: 1}
	var ok bool
	if e.Type, ok = tocTypes[te.Type]; !ok {
		return e, false, fmt.Errorf("unknown entry type %q", te.Type)
	}
	if te.Size < 0 || te.UID < 0 || te.UID > math.MaxUint32 || te.GID < 0 || te.GID > math.MaxUint32 {
		return e, false, fmt.Errorf("size %d, uid %d or gid %d out of range", te.Size, te.UID, te.GID)
	}
	if te.Type == "reg" {
		e.Size = te.Size
	}
	e.UID, e.GID = uint32(te.UID), uint32(te.GID)
	if err := devAndTarget(&e, te); err != nil {
		return e, false, err
	}
	if mt, err := time.Parse(time.RFC3339, te.ModTime3339); err == nil {
		e.Mtime = unixNano(mt)
	}
	// The TOC keeps one time; the others follow it, as tar extraction does.
	e.Atime, e.Ctime = e.Mtime, e.Mtime
	opaque, err = xattrsOf(&e, te.Xattrs)
	return e, opaque, err
}

func devAndTarget(e *layer.Entry, te *estargz.TOCEntry) error {
	if e.Type == layer.TypeChar || e.Type == layer.TypeBlock {
		if te.DevMajor < 0 || te.DevMajor > math.MaxUint32 || te.DevMinor < 0 || te.DevMinor > math.MaxUint32 {
			return fmt.Errorf("device %d:%d out of range", te.DevMajor, te.DevMinor)
		}
		e.Rdev = unix.Mkdev(uint32(te.DevMajor), uint32(te.DevMinor))
	}
	if te.Type == "symlink" {
		t := te.LinkName
		if t == "" || len(t) >= syscall.PathMax || strings.IndexByte(t, 0) >= 0 {
			return fmt.Errorf("symlink target %q is not a valid target", t)
		}
		e.Target = t
	}
	return nil
}

// xattrsOf copies the xattrs a file can have into e, without overlay
// bookkeeping, which the merged tree never shows.
func xattrsOf(e *layer.Entry, xs map[string][]byte) (opaque bool, err error) {
	for k, v := range xs {
		if k == "" || len(k) > 255 || strings.IndexByte(k, 0) >= 0 || len(v) > 64<<10 {
			return false, fmt.Errorf("xattr %q (%d bytes) is not a valid xattr", k, len(v))
		}
		if layer.IsPrivateXattr(k) {
			opaque = opaque || (e.Type == layer.TypeDir && layer.IsOpaqueXattr(k, v))
			continue
		}
		if e.Xattrs == nil {
			e.Xattrs = map[string][]byte{}
		}
		e.Xattrs[k] = v
	}
	return opaque, nil
}

// unixNano saturates where time.UnixNano is undefined (before 1678, after 2262).
func unixNano(t time.Time) int64 {
	switch {
	case t.Before(time.Unix(0, math.MinInt64)):
		return math.MinInt64
	case t.After(time.Unix(0, math.MaxInt64)):
		return math.MaxInt64
	}
	return t.UnixNano()
}
