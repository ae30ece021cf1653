package cache

import (
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"sync"
	"time"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// maxMemo bounds how many verified file entries a Store remembers. Past
// it the memo starts over: forgetting costs one more hash of a file on its
// next open, never a wrong answer.
const maxMemo = 1 << 16

// PutFile stores a whole file of size bytes with digest d, written by
// fill, which may write in pieces of any size. The bytes are hashed as
// they are written to a temp file, never held in memory, and the file is
// renamed in only if it is exactly size bytes with digest d; otherwise
// PutFile returns an error wrapping ErrMismatch and stores nothing. An
// entry already there is kept and fill is not called. An error from fill
// is returned wrapped.
func (s *Store) PutFile(d digest.Digest, size int64, fill func(w io.Writer) error) error {
	p, err := s.path(KindFile, d)
	if err != nil {
		s.rejected.Add(1)
		return err
	}
	if size < 0 {
		s.rejected.Add(1)
		return fmt.Errorf("cache: put file %s: size %d: %w", d, size, ErrMismatch)
	}
	if err := s.checkSize(size, 0); err != nil {
		s.rejected.Add(1)
		return err
	}
	if _, err := os.Lstat(p); err == nil {
		return nil
	}
	key, stored, err := s.writeFile(d, p, size, fill)
	if err != nil {
		return err
	}
	if stored {
		s.filePuts.Add(1)
		s.remember(d, key)
		s.added(size)
	}
	return nil
}

// writeFile fills a temp file through a hashing writer, checks it, and
// commits it to p.
func (s *Store) writeFile(d digest.Digest, p string, size int64, fill func(io.Writer) error) (fileKey, bool, error) {
	f, err := s.createTemp()
	if err != nil {
		s.errs.Add(1)
		return fileKey{}, false, err
	}
	w := &hashWriter{f: f, h: d.Algorithm().Hash(), left: size}
	err = fill(w)
	if err == nil {
		err = w.err
	}
	if err == nil && (w.left != 0 || digest.NewDigest(d.Algorithm(), w.h) != d) {
		err = fmt.Errorf("%w: got %d bytes of %s, want %d", ErrMismatch, size-w.left, digest.NewDigest(d.Algorithm(), w.h), size)
	}
	if err != nil {
		s.abort(f)
		if errors.Is(err, ErrMismatch) {
			s.rejected.Add(1)
		}
		return fileKey{}, false, fmt.Errorf("cache: put file %s: %w", d, err)
	}
	// Storing is a use: without this, a file that took minutes to fetch
	// would enter the cache as old as the start of its download.
	s.setAtime(f.Name(), time.Now())
	key, stored, err := s.commit(f, p)
	if err != nil {
		s.errs.Add(1)
	}
	return key, stored, err
}

// hashBufs holds the buffers hashAll reads through: large enough that a
// GiB costs a few thousand reads, pooled because GC hashes every entry.
var hashBufs = sync.Pool{New: func() any { return new([256 << 10]byte) }}

// hashAll feeds h everything r holds, returning how many bytes that was.
func hashAll(h hash.Hash, r io.Reader) (int64, error) {
	buf := hashBufs.Get().(*[256 << 10]byte)
	defer hashBufs.Put(buf)
	return io.CopyBuffer(h, r, buf[:])
}

// hashWriter writes to a temp file and a hash, refusing to write past the
// size announced (a runaway fill must not fill the disk first).
type hashWriter struct {
	f    *os.File
	h    hash.Hash
	left int64
	err  error // the first error, returned again by every later Write
}

func (w *hashWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if int64(len(p)) > w.left {
		w.err = fmt.Errorf("%w: more bytes than the size announced", ErrMismatch)
		return 0, w.err
	}
	n, err := w.f.Write(p)
	w.h.Write(p[:n])
	w.left -= int64(n)
	if err != nil {
		w.err = fmt.Errorf("write %s: %w", w.f.Name(), err)
	}
	return n, w.err
}

// OpenFile returns the whole-file entry for d, opened read-only, after
// making sure it holds d's bytes: the first time this Store opens the
// file (or after it has changed: another inode, size or mtime), by hashing
// it whole; after that, by comparing its identity with the one verified.
// An entry that fails is removed and reported as a miss. A hit counts as
// a use for eviction. The caller closes the file; an entry evicted while
// open stays readable through it.
func (s *Store) OpenFile(d digest.Digest) (*os.File, bool) {
	f, err := s.openFile(d)
	if err != nil {
		s.fileMisses.Add(1)
		if !errors.Is(err, fs.ErrNotExist) {
			s.opts.logger.Warn("cache: open file", "digest", d, "err", err)
		}
		return nil, false
	}
	s.fileHits.Add(1)
	return f, true
}

func (s *Store) openFile(d digest.Digest) (*os.File, error) {
	p, err := s.path(KindFile, d)
	if err != nil {
		return nil, err
	}
	f, err := openEntry(p)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.errs.Add(1)
		}
		return nil, err
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		s.errs.Add(1)
		return nil, err
	}
	if err := s.verifyFile(d, f, info); err != nil {
		if errors.Is(err, errCorrupt) {
			s.corrupt.Add(1)
			s.forget(d, keyOf(info), true)
			s.discard(p, f)
		} else {
			s.errs.Add(1)
		}
		f.Close()
		return nil, fmt.Errorf("cache: %s: %w", p, err)
	}
	if err := setBlocking(f); err != nil {
		f.Close()
		s.errs.Add(1)
		return nil, err
	}
	s.touch(p, info)
	return f, nil
}

// setBlocking clears the O_NONBLOCK that opened f safely (see openEntry),
// so that the caller gets an ordinary read-only file, as the backing file
// of a passthrough open should be.
func setBlocking(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.SetNonblock(int(fd), false) }); err != nil {
		return err
	}
	return serr
}

// verifyFile checks that f, described by info, is d's entry: at once if
// this Store has verified a file with the same identity, else by hashing
// it. Concurrent first opens of one file share a single hash.
func (s *Store) verifyFile(d digest.Digest, f *os.File, info fs.FileInfo) error {
	if !info.Mode().IsRegular() {
		return fmt.Errorf("%w: %s", errCorrupt, info.Mode().Type())
	}
	key := keyOf(info)
	if s.verified(d, key) {
		return nil
	}
	flight := fmt.Sprint(d, key.dev, key.ino, key.size, key.mtime)
	_, err, _ := s.verify.Do(flight, func() (any, error) {
		if s.verified(d, key) {
			return nil, nil // a flight that ended just before this one began
		}
		s.hashes.Add(1)
		if err := hashFile(d, f, key); err != nil {
			return nil, err
		}
		s.remember(d, key)
		return nil, nil
	})
	return err
}

// hashFile hashes f from its start to its end, without moving its offset,
// and checks the result against d and f's identity against key (a file
// written to while it was hashed has changed under the hash).
func hashFile(d digest.Digest, f *os.File, key fileKey) error {
	h := d.Algorithm().Hash()
	n, err := hashAll(h, io.NewSectionReader(f, 0, 1<<62))
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if got := digest.NewDigest(d.Algorithm(), h); got != d {
		return fmt.Errorf("%w: %d bytes of %s", errCorrupt, n, got)
	}
	after, err := f.Stat()
	if err != nil {
		return err
	}
	if keyOf(after) != key || n != key.size {
		return fmt.Errorf("%w: changed while it was verified", errCorrupt)
	}
	return nil
}

// HasFile reports whether a whole-file entry for d exists, without
// opening or verifying it, and without counting as a use.
func (s *Store) HasFile(d digest.Digest) bool {
	return s.has(KindFile, d)
}

// verified reports whether key is the identity of d's entry that this
// Store, or one sharing its verified dir, has verified.
func (s *Store) verified(d digest.Digest, key fileKey) bool {
	s.mu.Lock()
	k, ok := s.memo[d]
	s.mu.Unlock()
	if ok && k == key {
		return true
	}
	if !s.recorded(d, key) {
		return false
	}
	s.memorize(d, key)
	return true
}

// remember notes that key is the identity of d's entry, just verified.
func (s *Store) remember(d digest.Digest, key fileKey) {
	s.memorize(d, key)
	s.record(d, key)
}

func (s *Store) memorize(d digest.Digest, key fileKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.memo) >= maxMemo {
		clear(s.memo)
	}
	s.memo[d] = key
}

// forget drops what this Store and the verified dir know of d's entry
// with the identity key, which is gone or, with failed, found damaged.
func (s *Store) forget(d digest.Digest, key fileKey, failed bool) {
	s.mu.Lock()
	delete(s.memo, d)
	s.mu.Unlock()
	s.unrecord(d, key, failed)
}
