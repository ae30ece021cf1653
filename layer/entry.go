package layer

import (
	"context"
	"errors"
	"io"
	"syscall"
)

// Sentinel errors. Callers test them with errors.Is; they arrive wrapped with
// the layer and path concerned.
var (
	// ErrNotExist: the path is not in the layer.
	ErrNotExist = errors.New("layer: no such entry")
	// ErrNotDir: a path component, or the path given to ReadDir, is not a directory.
	ErrNotDir = errors.New("layer: not a directory")
	// ErrInvalidPath: the path is not clean, relative and slash-separated.
	ErrInvalidPath = errors.New("layer: invalid path")
)

// Type is the kind of an entry.
type Type uint8

// The kinds of entries. TypeWhiteout exists only in a Dir returned by
// ReadDir; it deletes the same name in the layers below. TypeLowerLink
// exists only there too: a tar hard link whose target is not in the layer
// but at Target in the layers below (a layer may link to a file its parents
// hold); a union shows that file under the entry's name.
const (
	TypeReg Type = iota + 1
	TypeDir
	TypeSymlink
	TypeChar
	TypeBlock
	TypeFIFO
	TypeSocket
	TypeWhiteout
	TypeLowerLink
)

var typeNames = [...]string{"invalid", "file", "dir", "symlink", "char", "block", "fifo", "socket", "whiteout", "lower link"}

func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return typeNames[0]
}

// Mode returns the S_IFMT bits of t (0 for a whiteout).
func (t Type) Mode() uint32 {
	switch t {
	case TypeReg:
		return syscall.S_IFREG
	case TypeDir:
		return syscall.S_IFDIR
	case TypeSymlink:
		return syscall.S_IFLNK
	case TypeChar:
		return syscall.S_IFCHR
	case TypeBlock:
		return syscall.S_IFBLK
	case TypeFIFO:
		return syscall.S_IFIFO
	case TypeSocket:
		return syscall.S_IFSOCK
	}
	return 0
}

// TypeOfMode maps S_IFMT bits to a Type (0 when unknown).
func TypeOfMode(mode uint32) Type {
	switch mode & syscall.S_IFMT {
	case syscall.S_IFREG:
		return TypeReg
	case syscall.S_IFDIR:
		return TypeDir
	case syscall.S_IFLNK:
		return TypeSymlink
	case syscall.S_IFCHR:
		return TypeChar
	case syscall.S_IFBLK:
		return TypeBlock
	case syscall.S_IFIFO:
		return TypeFIFO
	case syscall.S_IFSOCK:
		return TypeSocket
	}
	return 0
}

// Entry is one name in a layer directory: what stat(2), readlink(2) and
// getxattr(2) would tell about it. Times are Unix nanoseconds.
type Entry struct {
	Name   string
	Type   Type
	Perm   uint32 // permission bits, with setuid, setgid and sticky (07777)
	UID    uint32
	GID    uint32
	Size   int64
	Mtime  int64
	Atime  int64
	Ctime  int64
	Rdev   uint64 // device number of a char or block device
	Target string // symlink target; for TypeLowerLink, the path of the linked file
	Nlink  uint32 // hard links to this file inside the layer (>= 1)
	ID     uint64 // identity inside the layer; hard links share it
	Xattrs map[string][]byte
	// Implied marks a directory that no tar entry describes, only deeper
	// names (tar writers such as umoci leave out unchanged parents). Its
	// attributes are defaults (0755, root, time 0); a union takes them from
	// the same directory in a lower layer, as extracting the layers onto
	// one another would leave it.
	Implied bool
}

// Dir is a directory's children, sorted by name and unique by name.
type Dir struct {
	Entries []Entry
	// Opaque reports that the directory hides the same directory in every
	// layer below.
	Opaque bool
}

// Find returns the entry called name, by binary search.
func (d *Dir) Find(name string) (*Entry, bool) {
	lo, hi := 0, len(d.Entries)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if d.Entries[m].Name < name {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(d.Entries) && d.Entries[lo].Name == name {
		return &d.Entries[lo], true
	}
	return nil, false
}

// Content is an open regular file of a layer.
type Content interface {
	io.ReaderAt
	io.Closer
}

// Fder is an optional upgrade of Content: content backed by a local file
// descriptor, which a FUSE server can hand to the kernel for passthrough I/O.
// The descriptor stays owned by the Content.
type Fder interface {
	Fd() uintptr
}

// Layer is one read-only layer.
type Layer interface {
	// Root describes the layer's root directory.
	Root(ctx context.Context) (Entry, error)
	// ReadDir lists the directory at path.
	ReadDir(ctx context.Context, path string) (Dir, error)
	// Open opens the regular file at path for reading.
	Open(ctx context.Context, path string) (Content, error)
	// String names the layer in errors and logs.
	String() string
}
