package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// Kind tells chunk entries from whole-file entries.
type Kind uint8

const (
	// KindChunk is an entry under DIR/chunks: a chunk, read whole by Get.
	KindChunk Kind = iota + 1
	// KindFile is an entry under DIR/files: a whole file, opened by OpenFile.
	KindFile
)

// kinds lists every kind, in the order scans visit them.
var kinds = []Kind{KindChunk, KindFile}

func (k Kind) String() string {
	switch k {
	case KindChunk:
		return "chunk"
	case KindFile:
		return "file"
	}
	return "kind(" + fmt.Sprint(uint8(k)) + ")"
}

// MarshalText names the kind in JSON: "chunk" or "file".
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// Info describes one entry, as Walk finds it.
type Info struct {
	Digest   digest.Digest `json:"digest"`
	Kind     Kind          `json:"kind"`
	Size     int64         `json:"size"`
	LastUsed time.Time     `json:"last_used"` // its atime: the last recorded use, or when it was stored
	Path     string        `json:"path"`
}

// KindUsage counts entries and their bytes.
type KindUsage struct {
	Entries int64 `json:"entries"`
	Bytes   int64 `json:"bytes"`
}

func (u *KindUsage) add(o KindUsage) {
	u.Entries += o.Entries
	u.Bytes += o.Bytes
}

// Usage is what a cache holds, per kind. Bytes are file sizes; the file
// system adds its block rounding and directories on top.
type Usage struct {
	Chunks KindUsage `json:"chunks"`
	Files  KindUsage `json:"files"`
}

// Total is both kinds together.
func (u Usage) Total() KindUsage {
	t := u.Chunks
	t.add(u.Files)
	return t
}

func (u *Usage) of(k Kind) *KindUsage {
	if k == KindFile {
		return &u.Files
	}
	return &u.Chunks
}

// Walk calls fn with every entry of the cache, chunks first, in no
// particular order within a kind, until fn returns an error (which Walk
// returns) or ctx ends. Entries added or removed while it runs may or may
// not be seen. It only stats entries: walking neither reads nor uses them.
func (s *Store) Walk(ctx context.Context, fn func(Info) error) error {
	return s.scan(ctx, func(e *scanEntry) error {
		if !e.regular() {
			return nil
		}
		return fn(e.info())
	})
}

// Usage counts the entries and bytes of each kind by walking the whole
// cache; on a million entries that takes seconds. Stats has the usage
// record's estimate, which costs nothing.
func (s *Store) Usage(ctx context.Context) (Usage, error) {
	var u Usage
	err := s.scan(ctx, func(e *scanEntry) error {
		if e.regular() {
			u.of(e.kind).add(KindUsage{Entries: 1, Bytes: e.st.Size})
		}
		return nil
	})
	return u, err
}

// scanEntry is one name found under an entry directory, with what lstat
// said about it. The digest and path are built only when asked for: most
// visits need neither.
type scanEntry struct {
	kind Kind
	alg  digest.Algorithm
	name string // the encoded digest
	dir  string // its fan-out directory
	st   unix.Stat_t
}

func (e *scanEntry) d() digest.Digest { return digest.NewDigestFromEncoded(e.alg, e.name) }
func (e *scanEntry) path() string     { return e.dir + string(filepath.Separator) + e.name }
func (e *scanEntry) regular() bool    { return e.st.Mode&unix.S_IFMT == unix.S_IFREG }
func (e *scanEntry) atime() time.Time { return time.Unix(e.st.Atim.Unix()) }

func (e *scanEntry) info() Info {
	return Info{Digest: e.d(), Kind: e.kind, Size: e.st.Size, LastUsed: e.atime(), Path: e.path()}
}

// scan calls visit with every name under DIR/chunks and DIR/files that is
// an entry's name (a valid digest, in its right fan-out directory), in
// directory order. It stops at ctx's end, checked once per directory, or
// at visit's first error. A missing directory is an empty one.
func (s *Store) scan(ctx context.Context, visit func(*scanEntry) error) error {
	for _, k := range kinds {
		root := s.kindDir(k)
		algs, err := readNames(root)
		if err != nil {
			return err
		}
		for _, alg := range algs {
			a := digest.Algorithm(alg)
			if !a.Available() {
				continue
			}
			fans, err := readNames(filepath.Join(root, alg))
			if err != nil {
				return err
			}
			for _, xx := range fans {
				if err := ctx.Err(); err != nil {
					return err
				}
				if err := s.scanDir(k, a, filepath.Join(root, alg, xx), xx, visit); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// scanDir visits the entries of one fan-out directory, statting each
// relative to the directory.
func (s *Store) scanDir(k Kind, a digest.Algorithm, dir, xx string, visit func(*scanEntry) error) error {
	f, err := os.Open(dir)
	if err != nil {
		return ignoreGone(err)
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("cache: list %s: %w", dir, err)
	}
	dfd := int(f.Fd())
	e := scanEntry{kind: k, alg: a, dir: dir}
	for _, name := range names {
		if !entryName(a, name, xx) {
			continue
		}
		e.name = name
		if err := unix.Fstatat(dfd, name, &e.st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return fmt.Errorf("cache: stat %s: %w", filepath.Join(dir, name), err)
		}
		s.scanned.Add(1)
		if err := visit(&e); err != nil {
			return err
		}
	}
	return nil
}

// entryName reports whether name, found in fan-out directory xx, is an
// entry's name for algorithm a: lowercase hex of the digest's length,
// starting with xx. (This is what digest.Validate checks, without its
// regular expression: a scan checks a million names.)
func entryName(a digest.Algorithm, name, xx string) bool {
	if len(name) != 2*a.Size() || name[:2] != xx {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// readNames lists dir; a directory that does not exist (or vanished) has
// no names.
func readNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, ignoreGone(err)
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("cache: list %s: %w", dir, err)
	}
	return names, nil
}

func ignoreGone(err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
		return nil
	}
	return fmt.Errorf("cache: %w", err)
}

// fileKey is the identity of a file entry as verified: a file with the
// same key has not been replaced or written since (writes change the
// mtime; touch leaves it alone).
type fileKey struct {
	dev, ino uint64
	size     int64
	mtime    int64 // ns
}

func keyOf(info fs.FileInfo) fileKey {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return fileKey{}
	}
	return fileKey{dev: uint64(st.Dev), ino: uint64(st.Ino), size: st.Size, mtime: st.Mtim.Nano()}
}
