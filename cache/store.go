package cache

import (
	_ "crypto/sha256" // registers the digest algorithms entries may be keyed by
	_ "crypto/sha512"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	digest "github.com/opencontainers/go-digest"
)

// Store is an on-disk, content-addressed store of verified bytes. It holds
// no lock and no open file between calls: every piece of shared state is a
// file under its directory, so any number of Stores, in this process or
// others, may use the same directory at once.
//
// Store satisfies lazy.ChunkStore.
type Store struct {
	chunks    string // dir/chunks: entries, by algorithm and fan-out
	tmp       string // dir/tmp: entries being written
	tmpPrefix string // names this process's temp files, for whoever finds them
	opts      options

	hits, misses, puts, corrupt, rejected, errs atomic.Int64
}

// Stats counts what a Store has done since Open, in this process only.
type Stats struct {
	Hits     int64 // Gets that returned verified bytes
	Misses   int64 // Gets that returned nothing, for whatever reason
	Puts     int64 // entries written by this process
	Corrupt  int64 // entries that failed verification on Get and were removed
	Rejected int64 // Puts refused: invalid digest, or data not matching it
	Errors   int64 // Gets and Puts that failed on I/O (each also logged)
}

// MaxEntrySize is the largest entry a Store keeps. Get holds an entry in
// memory whole, so the cap keeps a damaged or planted file (a sparse file of
// a terabyte, say) from exhausting memory; chunks are far smaller (lazy
// refuses chunks over 64 MiB by default).
const MaxEntrySize = 1 << 30

// errCorrupt marks an entry whose bytes no longer match its name.
var errCorrupt = errors.New("entry does not match its digest")

// Open returns a Store keeping its entries under dir, creating the
// directories it needs. It removes temporary files older than
// DefaultStaleAge, the leftovers of writers that died; it never reads the
// entries themselves, so it takes the same time on an empty cache as on
// one with millions of entries.
func Open(dir string, opts ...Option) (*Store, error) {
	s := &Store{
		chunks:    filepath.Join(dir, "chunks"),
		tmp:       filepath.Join(dir, "tmp"),
		tmpPrefix: "put-" + strconv.Itoa(os.Getpid()) + "-",
	}
	for _, o := range opts {
		if err := o(&s.opts); err != nil {
			return nil, err
		}
	}
	s.opts.setDefaults()
	for _, d := range []string{s.chunks, s.tmp} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("cache: open %s: %w", dir, err)
		}
	}
	s.removeStale(time.Now().Add(-DefaultStaleAge))
	return s, nil
}

// removeStale deletes temp files last written before cutoff. Another
// process may be doing the same, so a file vanishing under it is normal.
func (s *Store) removeStale(cutoff time.Time) {
	ents, err := os.ReadDir(s.tmp)
	if err != nil {
		s.opts.logger.Warn("cache: list temp files", "err", err)
		return
	}
	for _, e := range ents {
		info, err := e.Info()
		if err != nil || !info.ModTime().Before(cutoff) {
			continue
		}
		p := filepath.Join(s.tmp, e.Name())
		if err := os.RemoveAll(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.opts.logger.Warn("cache: remove stale temp file", "path", p, "err", err)
		}
	}
}

// Stats returns the counters so far.
func (s *Store) Stats() Stats {
	return Stats{
		Hits:     s.hits.Load(),
		Misses:   s.misses.Load(),
		Puts:     s.puts.Load(),
		Corrupt:  s.corrupt.Load(),
		Rejected: s.rejected.Load(),
		Errors:   s.errs.Load(),
	}
}

// path returns where the entry for d lives. Validate guarantees a known
// algorithm and an encoded part of lowercase hex of the right length, so the
// result never leaves s.chunks.
func (s *Store) path(d digest.Digest) (string, error) {
	if err := d.Validate(); err != nil {
		return "", fmt.Errorf("cache: digest %q: %w", d, err)
	}
	enc := d.Encoded()
	return filepath.Join(s.chunks, d.Algorithm().String(), enc[:2], enc), nil
}

// Get returns the bytes stored under d, verified against d. An entry that
// fails verification is removed and reported as a miss.
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
	p, err := s.path(d)
	if err != nil {
		return nil, err
	}
	// O_NONBLOCK: a FIFO planted at p must not hang the open; it changes
	// nothing for a regular file.
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.errs.Add(1)
		}
		return nil, err
	}
	defer f.Close()
	data, err := readAll(f)
	if errors.Is(err, errCorrupt) {
		s.corrupt.Add(1)
		s.discard(p, f)
		return nil, fmt.Errorf("cache: %s: %w, discarded", p, err)
	}
	if err != nil {
		s.errs.Add(1)
		return nil, fmt.Errorf("cache: read %s: %w", p, err)
	}
	if d.Algorithm().FromBytes(data) != d {
		s.corrupt.Add(1)
		s.discard(p, f)
		return nil, fmt.Errorf("cache: %s: %w (%d bytes), discarded", p, errCorrupt, len(data))
	}
	return data, nil
}

// readAll reads f whole, sizing its buffer from f's size. What cannot be an
// entry (not a regular file, or too big) is errCorrupt.
func readAll(f *os.File) ([]byte, error) {
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() || info.Size() > MaxEntrySize {
		return nil, fmt.Errorf("%w: %s of %d bytes", errCorrupt, info.Mode().Type(), info.Size())
	}
	data := make([]byte, info.Size())
	n, err := io.ReadFull(f, data)
	if err == io.ErrUnexpectedEOF {
		// Shrunk since Stat: what was read is all there is, and it will not
		// verify.
		err = nil
	}
	return data[:n], err
}

// discard removes the corrupt entry p, read through f, unless another
// writer has already renamed a fresh entry over it.
func (s *Store) discard(p string, f *os.File) {
	read, err1 := f.Stat()
	now, err2 := os.Stat(p)
	if err1 != nil || err2 != nil || !os.SameFile(read, now) {
		return
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.opts.logger.Warn("cache: remove corrupt entry", "path", p, "err", err)
	}
}

// Put stores data under d if d is valid and data matches it; anything else
// is refused. An entry already present is left as it is.
func (s *Store) Put(d digest.Digest, data []byte) {
	if err := s.put(d, data); err != nil {
		s.opts.logger.Warn("cache: put", "digest", d, "err", err)
	}
}

func (s *Store) put(d digest.Digest, data []byte) error {
	p, err := s.path(d)
	if err != nil {
		s.rejected.Add(1)
		return err
	}
	// Hashing here rather than on the way to disk costs the same and
	// refuses bad data before it touches the disk.
	if len(data) > MaxEntrySize {
		s.rejected.Add(1)
		return fmt.Errorf("cache: %d bytes is over MaxEntrySize, refused", len(data))
	}
	if got := d.Algorithm().FromBytes(data); got != d {
		s.rejected.Add(1)
		return fmt.Errorf("cache: data is %s, refused", got)
	}
	if _, err := os.Lstat(p); err == nil {
		return nil
	}
	if err := s.write(p, data); err != nil {
		s.errs.Add(1)
		return err
	}
	s.puts.Add(1)
	return nil
}

// write puts data in a temp file of its own and renames it to p, so that
// p, if it exists at all, always holds complete bytes.
func (s *Store) write(p string, data []byte) error {
	f, err := os.CreateTemp(s.tmp, s.tmpPrefix+"*")
	if errors.Is(err, fs.ErrNotExist) {
		// Someone cleared the cache by removing its directories.
		if err = os.MkdirAll(s.tmp, 0o755); err == nil {
			f, err = os.CreateTemp(s.tmp, s.tmpPrefix+"*")
		}
	}
	if err != nil {
		return fmt.Errorf("cache: create temp file: %w", err)
	}
	tmp := f.Name()
	err = s.fill(f, data)
	if err == nil {
		err = s.rename(tmp, p)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

func (s *Store) fill(f *os.File, data []byte) error {
	_, err := f.Write(data)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil && s.opts.sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("cache: write %s: %w", f.Name(), err)
	}
	return nil
}

// rename moves tmp into place, creating the fan-out directory on first use
// (trying first saves a syscall on every Put after that).
func (s *Store) rename(tmp, p string) error {
	err := os.Rename(tmp, p)
	if errors.Is(err, fs.ErrNotExist) {
		if err = os.MkdirAll(filepath.Dir(p), 0o755); err == nil {
			err = os.Rename(tmp, p)
		}
	}
	if err == nil && s.opts.sync {
		err = syncDir(filepath.Dir(p))
	}
	if err != nil {
		return fmt.Errorf("cache: store %s: %w", p, err)
	}
	return nil
}

// syncDir makes a rename into dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Has reports whether an entry for d exists, without reading or verifying
// it (a later Get still verifies). It lets a reader plan which chunks to
// fetch without hashing every candidate from disk.
func (s *Store) Has(d digest.Digest) bool {
	p, err := s.path(d)
	if err != nil {
		return false
	}
	fi, err := os.Lstat(p)
	return err == nil && fi.Mode().IsRegular()
}
