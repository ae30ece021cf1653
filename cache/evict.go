package cache

import (
	"container/heap"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

const (
	// checkEvery is how often the evictor re-reads the usage record
	// unwoken, to notice what other processes (which may have no cap, or
	// a larger one) have added.
	checkEvery = 10 * time.Second
	// maxPasses bounds the scans of one sweep: the first may only
	// reconcile a record that did not know the base, the second evicts by
	// the right figures, a third mops up after a record that was far off.
	maxPasses = 3
	// evictLockFile, under DIR, is held (flock) by whoever sweeps.
	evictLockFile = "evict.lock"
)

// lowWater is what eviction brings a cache capped at max down to: 90% of
// it, so that one scan makes room for many Puts, not for one.
func lowWater(max int64) int64 { return max - max/10 }

func (s *Store) startEvictor() {
	ctx, cancel := context.WithCancel(context.Background())
	s.stop, s.kick, s.done = cancel, make(chan struct{}, 1), make(chan struct{})
	go s.evictLoop(ctx)
}

// evictLoop is the Store's one goroutine: it checks the usage record at
// start, when a Put finds the cache over its cap, and every checkEvery,
// and sweeps when the record is over the cap or not reconciled.
func (s *Store) evictLoop(ctx context.Context) {
	defer close(s.done)
	tick := time.NewTicker(checkEvery)
	defer tick.Stop()
	for {
		rest := s.check(ctx)
		if s.opts.hooks.checked != nil {
			s.opts.hooks.checked()
		}
		if !sleep(ctx, rest) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		case <-tick.C:
		}
	}
}

// sleep waits d unless ctx ends first, reporting whether it did not.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// check sweeps if the record says the cache is over its cap, or does not
// know, and returns how long to rest before the next sweep: as long as
// this one took, so that sweeping a huge cache under constant pressure
// takes at most half of one core, and longer after a failure.
func (s *Store) check(ctx context.Context) time.Duration {
	r, err := s.readUsage()
	if err != nil {
		s.opts.logger.Warn("cache: read usage record", "err", err)
		return checkEvery
	}
	if r.Reconciled != 0 && r.Bytes <= s.opts.maxSize {
		return 0
	}
	unlock, ok := s.tryLockEvict()
	if !ok {
		return 0 // another process sweeps; it brings the record down for all
	}
	defer unlock()
	start := time.Now()
	res, err := s.sweep(ctx, lowWater(s.opts.maxSize), false)
	took := time.Since(start)
	if err != nil {
		if ctx.Err() == nil {
			s.opts.logger.Warn("cache: evict", "err", err)
		}
		return max(took, checkEvery)
	}
	s.opts.logger.Debug("cache: swept", "evicted", res.evicted.Entries, "evicted_bytes", res.evicted.Bytes,
		"bytes", res.after.Total().Bytes, "entries", res.after.Total().Entries, "took", took)
	return took
}

// tryLockEvict takes the sweep lock if nobody holds it.
func (s *Store) tryLockEvict() (unlock func(), ok bool) {
	f, err := os.OpenFile(filepath.Join(s.dir, evictLockFile), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		s.opts.logger.Warn("cache: open eviction lock", "err", err)
		return nil, false
	}
	if err := flock(f, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, false
	}
	return func() { f.Close() }, true
}

// lockEvict waits for the sweep lock until ctx ends.
func (s *Store) lockEvict(ctx context.Context) (unlock func(), err error) {
	for {
		if unlock, ok := s.tryLockEvict(); ok {
			return unlock, nil
		}
		if !sleep(ctx, 50*time.Millisecond) {
			return nil, ctx.Err()
		}
	}
}

// sweepResult is what one sweep found and did.
type sweepResult struct {
	after   Usage     // what the cache holds at the end: the last scan less evictions
	evicted KindUsage // entries removed to get under the target
	corrupt KindUsage // entries removed because they failed verification
}

// sweep reconciles the usage record with a scan of every entry and, if
// target >= 0, removes the least recently used entries until the record is
// at most target bytes; with verify it also hashes every entry and removes
// those that do not match. The caller holds the sweep lock.
func (s *Store) sweep(ctx context.Context, target int64, verify bool) (sweepResult, error) {
	var res sweepResult
	for pass := 1; ; pass++ {
		r0, err := s.readUsage()
		if err != nil {
			return res, err
		}
		var need int64
		if target >= 0 && r0.Reconciled != 0 {
			need = r0.Bytes - target
			need += need / 8 // slack for what the record missed
		}
		p, err := s.scanPass(ctx, need, verify && pass == 1)
		res.corrupt.add(p.corrupt)
		if err != nil {
			return res, err
		}
		r, err := s.reconcile(r0, p.seen.Total())
		if err != nil {
			return res, err
		}
		res.after = p.seen
		over := r.Bytes - target
		if target < 0 || over <= 0 {
			return res, nil
		}
		ev := s.evict(ctx, p.cands.h, over, &res.after)
		res.evicted.add(ev)
		if ev.Entries > 0 {
			s.adjustUsage(-ev.Bytes, -ev.Entries)
		}
		if ev.Bytes >= over || pass == maxPasses || ctx.Err() != nil {
			return res, ctx.Err()
		}
	}
}

// pass is one scan of a sweep.
type pass struct {
	seen    Usage     // good entries found
	corrupt KindUsage // entries verification removed
	cands   candidates
}

// freshMargin widens "since the scan started" for the timestamps a scan
// compares: the kernel stamps files from a coarse clock that lags the
// real one by up to a tick (4-10 ms).
const freshMargin = 50 * time.Millisecond

// scanPass scans every entry, counting it and offering it for eviction
// (when need > 0) unless it was written or used since the scan started:
// those are in use, and may not even have been counted yet.
func (s *Store) scanPass(ctx context.Context, need int64, verify bool) (*pass, error) {
	p := &pass{cands: candidates{need: need}}
	start := time.Now().Add(-freshMargin).UnixNano()
	if s.opts.hooks.sweep != nil {
		s.opts.hooks.sweep()
	}
	err := s.scan(ctx, func(e *scanEntry) error {
		if verify && !s.verifyEntry(e, &p.corrupt) {
			return nil
		}
		if !e.regular() {
			return nil
		}
		p.seen.of(e.kind).add(KindUsage{Entries: 1, Bytes: e.st.Size})
		if e.st.Mtim.Nano() < start && e.st.Atim.Nano() < start {
			p.cands.offer(e)
		}
		return nil
	})
	return p, err
}

// reconcile sets the record to what a scan saw, plus whatever other
// processes added to the record while it ran (the difference between the
// record now and r0, read when the scan began). Entries put during the
// scan that the scan also saw are counted twice; the error is bounded by
// one scan's worth of Puts, and it errs high, which is the safe side.
func (s *Store) reconcile(r0 usageRecord, seen KindUsage) (usageRecord, error) {
	return s.updateUsage(func(r *usageRecord, found bool) bool {
		if found {
			seen.Bytes += r.Bytes - r0.Bytes
			seen.Entries += r.Entries - r0.Entries
		}
		*r = usageRecord{Bytes: max(seen.Bytes, 0), Entries: max(seen.Entries, 0), Reconciled: time.Now().Unix()}
		return true
	})
}

// evict removes candidates, least recently used first, until over bytes
// are gone, counting them out of after.
func (s *Store) evict(ctx context.Context, cands []candidate, over int64, after *Usage) KindUsage {
	slices.SortFunc(cands, func(a, b candidate) int { return compareInt64(a.atime, b.atime) })
	var ev KindUsage
	for i := range cands {
		c := &cands[i]
		if ev.Bytes >= over || ctx.Err() != nil {
			break
		}
		if !s.evictOne(c) {
			continue
		}
		ev.add(KindUsage{Entries: 1, Bytes: c.size})
		after.of(c.kind).add(KindUsage{Entries: -1, Bytes: -c.size})
	}
	s.evictions.Add(ev.Entries)
	s.evictedBytes.Add(ev.Bytes)
	return ev
}

// evictOne removes c if its path still names the very file the scan saw
// (same inode, same mtime) and nothing has used it since (same atime). An
// entry replaced, rewritten or read since the scan is left alone. A hit
// between this check and the unlink can still lose its entry, which costs
// one fetch; a reader that already has the file open keeps reading it.
func (s *Store) evictOne(c *candidate) bool {
	var st unix.Stat_t
	if err := unix.Lstat(c.path, &st); err != nil {
		return false
	}
	if uint64(st.Dev) != c.dev || uint64(st.Ino) != c.ino || st.Atim.Nano() != c.atime || st.Mtim.Nano() != c.mtime {
		return false
	}
	if err := os.Remove(c.path); err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.opts.logger.Warn("cache: evict", "path", c.path, "err", err)
		}
		return false
	}
	if c.kind == KindFile {
		s.forget(c.d, fileKey{dev: c.dev, ino: c.ino, size: c.size, mtime: c.mtime}, false)
	}
	return true
}

func compareInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// candidate is an entry a scan found that eviction may remove.
type candidate struct {
	path         string
	d            digest.Digest
	kind         Kind
	size         int64
	atime, mtime int64 // ns
	dev, ino     uint64
}

// candidates keeps, during a scan, the least recently used entries whose
// sizes add up to at least need bytes, and no more: a max-heap on atime
// whose top (the most recently used kept) is dropped whenever the rest
// still make need. Its memory is that of the entries one eviction
// removes, not of the whole cache.
type candidates struct {
	need  int64
	bytes int64
	h     []candidate
}

func (c *candidates) offer(e *scanEntry) {
	if c.need <= 0 {
		return
	}
	at := e.st.Atim.Nano()
	if c.bytes >= c.need && at >= c.h[0].atime {
		return
	}
	heap.Push(c, candidate{path: e.path(), d: e.d(), kind: e.kind, size: e.st.Size,
		atime: at, mtime: e.st.Mtim.Nano(), dev: uint64(e.st.Dev), ino: uint64(e.st.Ino)})
	c.bytes += e.st.Size
	for len(c.h) > 1 && c.bytes-c.h[0].size >= c.need {
		c.bytes -= heap.Pop(c).(candidate).size
	}
}

func (c *candidates) Len() int           { return len(c.h) }
func (c *candidates) Less(i, j int) bool { return c.h[i].atime > c.h[j].atime }
func (c *candidates) Swap(i, j int)      { c.h[i], c.h[j] = c.h[j], c.h[i] }
func (c *candidates) Push(x any)         { c.h = append(c.h, x.(candidate)) }
func (c *candidates) Pop() any {
	x := c.h[len(c.h)-1]
	c.h = c.h[:len(c.h)-1]
	return x
}
