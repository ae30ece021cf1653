package cache

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
	"time"

	digest "github.com/opencontainers/go-digest"
)

// GCOptions says what GC does beyond removing stale temp files and
// reconciling the usage record, which it always does.
type GCOptions struct {
	// MaxSize, if > 0, evicts the least recently used entries until the
	// cache holds at most this many bytes (exactly, not 90% of it).
	MaxSize int64
	// Verify hashes every entry and removes those that do not match their
	// digest. It reads the whole cache.
	Verify bool
}

// GCResult is what GC removed, and what it left.
type GCResult struct {
	Evicted      int64 `json:"evicted"` // entries removed to get under MaxSize
	EvictedBytes int64 `json:"evicted_bytes"`
	Corrupt      int64 `json:"corrupt"` // entries removed by Verify
	CorruptBytes int64 `json:"corrupt_bytes"`
	TempFiles    int64 `json:"temp_files"` // stale temp files removed
	TempBytes    int64 `json:"temp_bytes"`
	After        Usage `json:"after"` // what the cache holds now, per kind
}

// GC trims the cache for a maintenance tool (strata cache gc): it removes
// temp files older than DefaultStaleAge that no writer holds, scans every
// entry to reconcile the usage record, and, as opts asks, verifies entries
// and evicts down to a size. It waits for any sweep another process is
// running, so that two never remove the same entries twice. Mounts keep
// reading and writing while it runs.
func (s *Store) GC(ctx context.Context, opts GCOptions) (GCResult, error) {
	if opts.MaxSize < 0 {
		return GCResult{}, fmt.Errorf("cache: gc: negative max size %d", opts.MaxSize)
	}
	unlock, err := s.lockEvict(ctx)
	if err != nil {
		return GCResult{}, fmt.Errorf("cache: gc: %w", err)
	}
	defer unlock()
	var res GCResult
	res.TempFiles, res.TempBytes = s.removeStale(time.Now().Add(-DefaultStaleAge))
	target := int64(-1)
	if opts.MaxSize > 0 {
		target = opts.MaxSize
	}
	sw, err := s.sweep(ctx, target, opts.Verify)
	res.Evicted, res.EvictedBytes = sw.evicted.Entries, sw.evicted.Bytes
	res.Corrupt, res.CorruptBytes = sw.corrupt.Entries, sw.corrupt.Bytes
	res.After = sw.after
	if err != nil {
		return res, fmt.Errorf("cache: gc: %w", err)
	}
	return res, nil
}

// verifyEntry hashes the entry e and removes it if it does not match,
// counting it in bad. It reports whether e is (still) a good entry: false
// also when it is gone, or has been replaced since the scan saw it (the
// next scan counts the new one). It reads with O_NOATIME: checking an
// entry is not using it.
func (s *Store) verifyEntry(e *scanEntry, bad *KindUsage) bool {
	p := e.path()
	f, err := openNoAtime(p)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.opts.logger.Warn("cache: verify", "path", p, "err", err)
		}
		return false
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return false
	}
	if st, ok := info.Sys().(*syscall.Stat_t); !ok || uint64(st.Dev) != uint64(e.st.Dev) || uint64(st.Ino) != uint64(e.st.Ino) {
		return false
	}
	err = matches(f, info, e.kind, e.d())
	if err == nil {
		return true
	}
	if !errors.Is(err, errCorrupt) {
		// Unreadable is not corrupt: keep it, and let Get or OpenFile
		// decide when it is next used.
		s.errs.Add(1)
		s.opts.logger.Warn("cache: verify", "path", p, "err", err)
		return true
	}
	s.opts.logger.Warn("cache: verify: removing corrupt entry", "path", p, "err", err)
	s.corrupt.Add(1)
	s.discard(p, f)
	if e.kind == KindFile {
		s.forget(e.d(), keyOf(info), true)
	}
	bad.add(KindUsage{Entries: 1, Bytes: info.Size()})
	return false
}

// matches checks f, freshly opened and described by info, against d.
func matches(f *os.File, info fs.FileInfo, k Kind, d digest.Digest) error {
	if !info.Mode().IsRegular() || (k == KindChunk && info.Size() > MaxEntrySize) {
		return fmt.Errorf("%w: %s of %d bytes", errCorrupt, info.Mode().Type(), info.Size())
	}
	h := d.Algorithm().Hash()
	if _, err := hashAll(h, f); err != nil {
		return err
	}
	if got := digest.NewDigest(d.Algorithm(), h); got != d {
		return fmt.Errorf("%w: bytes are %s", errCorrupt, got)
	}
	return nil
}

// openNoAtime opens p for reading without updating its atime where the
// kernel allows it (O_NOATIME needs the file's owner or CAP_FOWNER).
func openNoAtime(p string) (*os.File, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOATIME, 0)
	if errors.Is(err, fs.ErrPermission) {
		f, err = openEntry(p)
	}
	return f, err
}
