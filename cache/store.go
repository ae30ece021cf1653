package cache

import (
	"context"
	_ "crypto/sha256" // registers the digest algorithms entries may be keyed by
	_ "crypto/sha512"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sync/singleflight"
	"golang.org/x/sys/unix"
)

// Store is an on-disk, content-addressed store of verified bytes. Every
// piece of shared state is a file under its directory, so any number of
// Stores, in this process or others, may use the same directory at once.
//
// Store satisfies lazy.ChunkStore. A Store opened with a cap owns one
// goroutine, which Close stops.
type Store struct {
	dir       string
	chunks    string // dir/chunks: chunk entries, by algorithm and fan-out
	files     string // dir/files: whole-file entries, laid out the same way
	tmp       string // dir/tmp: entries being written
	tmpPrefix string // names this process's temp files, for whoever finds them
	opts      options

	mu     sync.Mutex                // guards memo
	memo   map[digest.Digest]fileKey // file entries verified by this Store
	verify singleflight.Group        // one hash of a file entry at a time

	kick      chan struct{} // wakes the evictor; nil without a cap
	stop      context.CancelFunc
	done      chan struct{} // closed when the evictor has returned
	closeOnce sync.Once

	hits, misses, puts, corrupt, rejected, errs atomic.Int64
	fileHits, fileMisses, filePuts              atomic.Int64
	evictions, evictedBytes                     atomic.Int64

	// touches, scanned and hashes count atime updates, entries visited by
	// scans and file entries hashed by OpenFile, for the tests.
	touches, scanned, hashes atomic.Int64

	pending pendingUsage // usage record changes not written yet

	// namedOnly is set once the file system has refused an unnamed file
	// (O_TMPFILE): Puts then write named temp files (see tmpfile.go).
	namedOnly atomic.Bool
}

// Dir is the directory the Store keeps its entries under.
func (s *Store) Dir() string { return s.dir }

// Stats counts what a Store has done since Open, in this process only,
// and what the shared usage record says the cache holds.
type Stats struct {
	Hits     int64 // Gets that returned verified bytes
	Misses   int64 // Gets that returned nothing, for whatever reason
	Puts     int64 // chunk entries written by this process
	Corrupt  int64 // entries that failed verification on Get or OpenFile and were removed
	Rejected int64 // Puts and PutFiles refused: invalid digest, too big, or data not matching
	Errors   int64 // reads and writes that failed on I/O (each also logged)

	FileHits   int64 // OpenFiles that returned a verified file entry
	FileMisses int64 // OpenFiles that returned nothing
	FilePuts   int64 // file entries written by this process

	Evictions    int64 // entries this Store's eviction (background or GC) removed
	EvictedBytes int64 // their bytes

	// Bytes and Entries are the usage record's estimate for the whole
	// cache, all kinds and all processes; -1 while the record has not been
	// reconciled with a scan (see the package documentation).
	Bytes   int64
	Entries int64
	MaxSize int64 // the cap set with WithMaxSize; 0 means none
}

// MaxEntrySize is the largest chunk entry a Store keeps. Get holds a chunk
// in memory whole, so the cap keeps a damaged or planted file (a sparse
// file of a terabyte, say) from exhausting memory; chunks are far smaller
// (lazy refuses chunks over 64 MiB by default). File entries, which are
// streamed, have no such limit.
const MaxEntrySize = 1 << 30

var (
	// ErrMismatch is returned by PutFile when the bytes written are not
	// the size or the digest announced.
	ErrMismatch = errors.New("bytes do not match their digest or size")
	// ErrTooLarge is returned by PutFile for an entry larger than the cap.
	ErrTooLarge = errors.New("entry larger than the cache's max size")
	// ErrNotCache is returned by Open with WithCreate(false) when the
	// directory holds no cache.
	ErrNotCache = errors.New("not a strata cache (no chunks directory)")
)

// errCorrupt marks an entry whose bytes no longer match its name.
var errCorrupt = errors.New("entry does not match its digest")

// Open returns a Store keeping its entries under dir, creating the
// directories it needs. It removes temporary files older than
// DefaultStaleAge that no writer holds, the leftovers of writers that
// died; it never reads or lists the entries themselves, so it takes the
// same time on an empty cache as on one with millions of entries. With
// WithMaxSize it starts the goroutine that evicts, which Close stops.
func Open(dir string, opts ...Option) (*Store, error) {
	s := &Store{
		dir:       dir,
		chunks:    filepath.Join(dir, "chunks"),
		files:     filepath.Join(dir, "files"),
		tmp:       filepath.Join(dir, "tmp"),
		tmpPrefix: "put-" + strconv.Itoa(os.Getpid()) + "-",
		memo:      map[digest.Digest]fileKey{},
	}
	for _, o := range opts {
		if err := o(&s.opts); err != nil {
			return nil, err
		}
	}
	s.opts.setDefaults()
	if err := s.prepare(); err != nil {
		return nil, err
	}
	if s.opts.noCreate {
		return s, nil
	}
	s.removeStale(time.Now().Add(-DefaultStaleAge))
	s.initUsage()
	if s.opts.maxSize > 0 {
		s.startEvictor()
	}
	return s, nil
}

// prepare creates the directories, or checks that they are there.
func (s *Store) prepare() error {
	if s.opts.noCreate {
		fi, err := os.Stat(s.chunks)
		if errors.Is(err, fs.ErrNotExist) {
			if _, derr := os.Stat(s.dir); derr != nil {
				return fmt.Errorf("cache: %w", derr)
			}
			return fmt.Errorf("cache: %s: %w", s.dir, ErrNotCache)
		}
		if err != nil {
			return fmt.Errorf("cache: open %s: %w", s.dir, err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("cache: %s: %w", s.dir, ErrNotCache)
		}
		return nil
	}
	for _, d := range []string{s.chunks, s.files, s.tmp} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("cache: open %s: %w", s.dir, err)
		}
	}
	return nil
}

// Close stops the Store's eviction goroutine and waits for it to return,
// abandoning a scan midway (the next one starts over). It is safe to call
// more than once. The Store stays usable after Close; it just never
// evicts again.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.flushUsage()
		if s.stop != nil {
			s.stop()
			<-s.done
		}
	})
	return nil
}

// Stats returns the counters so far, and the usage record's estimate
// (which costs one read of a small file under a shared lock).
func (s *Store) Stats() Stats {
	st := Stats{
		Hits:         s.hits.Load(),
		Misses:       s.misses.Load(),
		Puts:         s.puts.Load(),
		Corrupt:      s.corrupt.Load(),
		Rejected:     s.rejected.Load(),
		Errors:       s.errs.Load(),
		FileHits:     s.fileHits.Load(),
		FileMisses:   s.fileMisses.Load(),
		FilePuts:     s.filePuts.Load(),
		Evictions:    s.evictions.Load(),
		EvictedBytes: s.evictedBytes.Load(),
		Bytes:        -1,
		Entries:      -1,
		MaxSize:      s.opts.maxSize,
	}
	if r, err := s.readUsage(); err == nil && r.Reconciled != 0 {
		st.Bytes, st.Entries = max(r.Bytes, 0), max(r.Entries, 0)
	}
	return st
}

// path returns where the entry of kind k for d lives. Validate guarantees
// a known algorithm and an encoded part of lowercase hex of the right
// length, so the result never leaves the kind's directory.
func (s *Store) path(k Kind, d digest.Digest) (string, error) {
	if err := d.Validate(); err != nil {
		return "", fmt.Errorf("cache: digest %q: %w", d, err)
	}
	enc := d.Encoded()
	return filepath.Join(s.kindDir(k), d.Algorithm().String(), enc[:2], enc), nil
}

func (s *Store) kindDir(k Kind) string {
	if k == KindFile {
		return s.files
	}
	return s.chunks
}

// Get returns the bytes stored under d, verified against d. An entry that
// fails verification is removed and reported as a miss. A hit counts as a
// use of the entry for eviction.
func (s *Store) Get(d digest.Digest) ([]byte, bool) {
	data, err := s.get(d)
	if err != nil {
		s.misses.Add(1)
		if !errors.Is(err, fs.ErrNotExist) {
			s.opts.logger.Warn("cache: get", "digest", d, "err", err)
		}
		return nil, false
	}
	s.hits.Add(1)
	return data, true
}

func (s *Store) get(d digest.Digest) ([]byte, error) {
	p, err := s.path(KindChunk, d)
	if err != nil {
		return nil, err
	}
	// Raw descriptors: an os.File costs five more system calls per Get
	// (non-blocking mode set and cleared, and a refused epoll
	// registration): 20-23 µs for a 4 KiB Get against 16-18 µs
	// (BenchmarkGet).
	fd, err := openEntryFd(p)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.errs.Add(1)
		}
		return nil, err
	}
	defer unix.Close(fd)
	data, st, err := readAllFd(fd)
	if errors.Is(err, errCorrupt) {
		s.corrupt.Add(1)
		s.discardStat(p, &st)
		return nil, fmt.Errorf("cache: %s: %w, discarded", p, err)
	}
	if err != nil {
		s.errs.Add(1)
		return nil, fmt.Errorf("cache: read %s: %w", p, err)
	}
	if d.Algorithm().FromBytes(data) != d {
		s.corrupt.Add(1)
		s.discardStat(p, &st)
		return nil, fmt.Errorf("cache: %s: %w (%d bytes), discarded", p, errCorrupt, len(data))
	}
	s.touchStat(p, &st)
	return data, nil
}

// openEntry opens an entry for reading. O_NONBLOCK: a FIFO planted at p
// must not hang the open; it changes nothing for a regular file.
func openEntry(p string) (*os.File, error) {
	return os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
}

// openEntryFd is openEntry for a raw descriptor.
func openEntryFd(p string) (int, error) {
	for {
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return -1, &fs.PathError{Op: "open", Path: p, Err: err}
		}
		return fd, nil
	}
}

// readAllFd reads the entry open as fd whole, sizing its buffer from its
// size, and returns its status from before the read. What cannot be a
// chunk entry (not a regular file, or too big) is errCorrupt.
func readAllFd(fd int) ([]byte, unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, st, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size > MaxEntrySize {
		return nil, st, fmt.Errorf("%w: mode %#o, %d bytes", errCorrupt, st.Mode&unix.S_IFMT, st.Size)
	}
	data := make([]byte, st.Size)
	n := 0
	for n < len(data) {
		k, err := unix.Read(fd, data[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, st, err
		}
		if k == 0 {
			break // shrunk since Fstat: what was read is all there is, and it will not verify
		}
		n += k
	}
	return data[:n], st, nil
}

// discard removes the corrupt entry p, read through f, unless another
// writer has already renamed a fresh entry over it. The usage record is
// left as it is: what it counted for the entry is unknown (the file may
// have grown or shrunk since), and a record that errs high only brings the
// next reconciling scan forward.
func (s *Store) discard(p string, f *os.File) {
	read, err := f.Stat()
	if err != nil {
		return
	}
	if st, ok := read.Sys().(*syscall.Stat_t); ok {
		s.discardStat(p, &unix.Stat_t{Dev: st.Dev, Ino: st.Ino})
	}
}

// discardStat is discard for the entry whose status, read through its
// descriptor, is st (only its device and inode count).
func (s *Store) discardStat(p string, st *unix.Stat_t) {
	var now unix.Stat_t
	if err := unix.Lstat(p, &now); err != nil || now.Dev != st.Dev || now.Ino != st.Ino {
		return
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.opts.logger.Warn("cache: remove corrupt entry", "path", p, "err", err)
	}
}

// Put stores data under d if d is valid and data matches it; anything else
// is refused. An entry already present is left as it is.
func (s *Store) Put(d digest.Digest, data []byte) {
	if err := s.put(d, data, true); err != nil {
		s.opts.logger.Warn("cache: put", "digest", d, "err", err)
	}
}

// PutVerified is Put for a caller that has just hashed data against d
// itself, as package lazy does before it stores a chunk: the bytes are not
// hashed a second time. Everything else is as Put, and Get still verifies
// every entry it reads.
func (s *Store) PutVerified(d digest.Digest, data []byte) {
	if err := s.put(d, data, false); err != nil {
		s.opts.logger.Warn("cache: put", "digest", d, "err", err)
	}
}

func (s *Store) put(d digest.Digest, data []byte, check bool) error {
	p, err := s.path(KindChunk, d)
	if err != nil {
		s.rejected.Add(1)
		return err
	}
	if err := s.checkSize(int64(len(data)), MaxEntrySize); err != nil {
		s.rejected.Add(1)
		return err
	}
	// Hashing here rather than on the way to disk costs the same and
	// refuses bad data before it touches the disk.
	if check {
		if got := d.Algorithm().FromBytes(data); got != d {
			s.rejected.Add(1)
			return fmt.Errorf("cache: data is %s, refused", got)
		}
	}
	var st unix.Stat_t
	if unix.Lstat(p, &st) == nil {
		return nil
	}
	stored, err := s.write(p, data)
	if err != nil {
		s.errs.Add(1)
		return err
	}
	if stored {
		s.puts.Add(1)
		s.added(int64(len(data)))
	}
	return nil
}

// checkSize refuses an entry of n bytes over limit or over the cap.
func (s *Store) checkSize(n, limit int64) error {
	if limit > 0 && n > limit {
		return fmt.Errorf("cache: %d bytes is over MaxEntrySize, refused", n)
	}
	if s.opts.maxSize > 0 && n > s.opts.maxSize {
		return fmt.Errorf("cache: %d bytes: %w of %d bytes, refused", n, ErrTooLarge, s.opts.maxSize)
	}
	return nil
}

// write stores data as the entry p so that p, if it exists at all, always
// holds complete bytes: through an unnamed file where the file system
// makes them, else through a temp file of its own renamed to p. It
// reports whether this call stored the entry (false: someone else's was
// already there).
func (s *Store) write(p string, data []byte) (bool, error) {
	if !s.namedOnly.Load() {
		stored, err := s.writeUnnamed(p, data)
		if !errors.Is(err, errNoTmpfile) {
			return stored, err
		}
		s.namedOnly.Store(true)
	}
	f, err := s.createTemp()
	if err != nil {
		return false, err
	}
	if _, err := f.Write(data); err != nil {
		s.abort(f)
		return false, fmt.Errorf("cache: write %s: %w", f.Name(), err)
	}
	_, stored, err := s.commit(f, p)
	return stored, err
}

// Has reports whether a chunk entry for d exists, without reading or
// verifying it (a later Get still verifies) and without counting as a use.
// It lets a reader plan which chunks to fetch without hashing every
// candidate from disk.
func (s *Store) Has(d digest.Digest) bool {
	return s.has(KindChunk, d)
}

func (s *Store) has(k Kind, d digest.Digest) bool {
	p, err := s.path(k, d)
	if err != nil {
		return false
	}
	fi, err := os.Lstat(p)
	return err == nil && fi.Mode().IsRegular()
}
