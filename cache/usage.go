package cache

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// usageFile is the usage record's name under DIR.
const usageFile = "usage"

// usageMagic starts a usage record; the number is its format version.
const usageMagic = "strata-cache-usage 1"

// usageRecord is DIR/usage: the estimated bytes and entries of the whole
// cache. Its on-disk form is one line of ASCII:
//
//	strata-cache-usage 1 BYTES ENTRIES RECONCILED CRC\n
//
// BYTES and ENTRIES are signed decimals, RECONCILED is the Unix time in
// seconds of the scan that last set them (0: never, so the two figures are
// only the sum of changes since an unknown base), and CRC is the CRC-32
// (IEEE) of everything before the space that precedes it, in 8 lowercase
// hex digits. Anything else (a missing, empty, torn or foreign file) reads
// as the zero record. Bytes after the newline are ignored.
type usageRecord struct {
	Bytes, Entries int64
	Reconciled     int64
}

func (r usageRecord) marshal() []byte {
	line := fmt.Sprintf("%s %d %d %d", usageMagic, r.Bytes, r.Entries, r.Reconciled)
	return fmt.Appendf(nil, "%s %08x\n", line, crc32.ChecksumIEEE([]byte(line)))
}

// parseUsage reads a record, reporting whether b held a valid one.
func parseUsage(b []byte) (usageRecord, bool) {
	line, _, ok := bytes.Cut(b, []byte{'\n'})
	if !ok {
		return usageRecord{}, false
	}
	i := bytes.LastIndexByte(line, ' ')
	if i < 0 {
		return usageRecord{}, false
	}
	sum, err := strconv.ParseUint(string(line[i+1:]), 16, 32)
	if err != nil || uint32(sum) != crc32.ChecksumIEEE(line[:i]) {
		return usageRecord{}, false
	}
	rest, ok := strings.CutPrefix(string(line[:i]), usageMagic+" ")
	if !ok {
		return usageRecord{}, false
	}
	f := strings.Split(rest, " ")
	if len(f) != 3 {
		return usageRecord{}, false
	}
	var r usageRecord
	for j, p := range []*int64{&r.Bytes, &r.Entries, &r.Reconciled} {
		if *p, err = strconv.ParseInt(f[j], 10, 64); err != nil {
			return usageRecord{}, false
		}
	}
	return r, true
}

// usageLockTries bounds how long a record update waits for the lock: its
// holders only ever read and write a few dozen bytes, so a lock held for
// long belongs to a process that is stopped (SIGSTOP, a debugger), and a
// Put must not hang behind it. Giving up costs an estimate that is off
// until the next reconciling scan.
const usageLockTries = 500

// errUsageBusy is returned when the usage record stays locked.
var errUsageBusy = errors.New("usage record locked by another process for too long")

// updateUsage runs fn on the record under an exclusive lock, writing back
// the record fn leaves if fn returns true; found says whether the file held
// a valid record. It returns the record as it stands after the update.
func (s *Store) updateUsage(fn func(r *usageRecord, found bool) bool) (usageRecord, error) {
	f, err := os.OpenFile(filepath.Join(s.dir, usageFile), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return usageRecord{}, fmt.Errorf("cache: usage record: %w", err)
	}
	defer f.Close()
	if err := lockShort(f, unix.LOCK_EX); err != nil {
		return usageRecord{}, err
	}
	r, found, err := readRecord(f)
	if err != nil {
		return usageRecord{}, err
	}
	if !fn(&r, found) {
		return r, nil
	}
	out := r.marshal()
	if _, err := f.WriteAt(out, 0); err != nil {
		return r, fmt.Errorf("cache: usage record: %w", err)
	}
	if err := f.Truncate(int64(len(out))); err != nil {
		return r, fmt.Errorf("cache: usage record: %w", err)
	}
	return r, nil
}

// readUsage reads the record under a shared lock, after writing this
// Store's pending additions to it; a missing or invalid record is the zero
// record.
func (s *Store) readUsage() (usageRecord, error) {
	s.flushUsage()
	f, err := os.Open(filepath.Join(s.dir, usageFile))
	if errors.Is(err, os.ErrNotExist) {
		return usageRecord{}, nil
	}
	if err != nil {
		return usageRecord{}, fmt.Errorf("cache: usage record: %w", err)
	}
	defer f.Close()
	if err := lockShort(f, unix.LOCK_SH); err != nil {
		return usageRecord{}, err
	}
	r, _, err := readRecord(f)
	return r, err
}

func readRecord(f *os.File) (usageRecord, bool, error) {
	buf := make([]byte, 128)
	n, err := f.ReadAt(buf, 0)
	if err != nil && err != io.EOF {
		return usageRecord{}, false, fmt.Errorf("cache: usage record: %w", err)
	}
	r, ok := parseUsage(buf[:n])
	return r, ok, nil
}

// lockShort takes a flock that is only ever held for a moment, polling
// rather than blocking so that a stopped holder cannot hang the caller.
// Closing f releases it.
func lockShort(f *os.File, how int) error {
	for try := 0; ; try++ {
		err := flock(f, how|unix.LOCK_NB)
		if !errors.Is(err, unix.EWOULDBLOCK) {
			return err
		}
		if try == usageLockTries {
			return fmt.Errorf("cache: %w", errUsageBusy)
		}
		time.Sleep(time.Millisecond)
	}
}

// adjustUsage adds the given changes to the record. Without a record it
// starts one from zero, marked unreconciled: the changes still count once
// a scan sets the base.
func (s *Store) adjustUsage(dBytes, dEntries int64) (usageRecord, error) {
	r, err := s.updateUsage(func(r *usageRecord, _ bool) bool {
		r.Bytes += dBytes
		r.Entries += dEntries
		return true
	})
	if err != nil {
		s.opts.logger.Warn("cache: update usage record", "err", err)
	}
	return r, err
}

// usageFlush is how long a new entry may wait to be counted in the usage
// record: entries stored within it cost one update of the record together
// instead of one each (a flock, a read and a write apiece, which cost as
// much as storing a small chunk).
const usageFlush = 100 * time.Millisecond

// pendingUsage is what a Store has added and not yet written to the usage
// record; a timer writes it, and so do Stats and Close.
type pendingUsage struct {
	mu             sync.Mutex
	bytes, entries int64
	timer          *time.Timer // set while a flush is due
}

// added counts a new entry of n bytes, to be written to the usage record
// within usageFlush.
func (s *Store) added(n int64) {
	s.pending.mu.Lock()
	defer s.pending.mu.Unlock()
	s.pending.bytes += n
	s.pending.entries++
	if s.pending.timer == nil {
		s.pending.timer = time.AfterFunc(usageFlush, s.flushUsage)
	}
}

// flushUsage writes the pending additions to the usage record, and wakes
// the evictor when the record says the cache is over its cap, or does not
// know.
func (s *Store) flushUsage() {
	s.pending.mu.Lock()
	n, entries := s.pending.bytes, s.pending.entries
	s.pending.bytes, s.pending.entries = 0, 0
	if s.pending.timer != nil {
		s.pending.timer.Stop()
		s.pending.timer = nil
	}
	s.pending.mu.Unlock()
	if entries == 0 {
		return
	}
	r, err := s.adjustUsage(n, entries)
	if err != nil || s.kick == nil {
		return
	}
	if r.Reconciled == 0 || r.Bytes > s.opts.maxSize {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
}

// initUsage writes a reconciled zero record for a cache that has no record
// and no entries: a new cache then needs no scan before its first
// eviction. Checking for entries under the record's lock orders this
// against every Put: a Put's entry is renamed in before it updates the
// record, so either the check sees the entry (and the record is left for
// a scan to set), or the Put's update comes after the zero record.
func (s *Store) initUsage() {
	_, err := s.updateUsage(func(r *usageRecord, found bool) bool {
		if found || !s.empty() {
			return false
		}
		*r = usageRecord{Reconciled: time.Now().Unix()}
		return true
	})
	if err != nil {
		s.opts.logger.Warn("cache: create usage record", "err", err)
	}
}

// empty reports whether the cache has no entries, by looking for the
// algorithm directories the first entry of each kind creates.
func (s *Store) empty() bool {
	for _, k := range kinds {
		f, err := os.Open(s.kindDir(k))
		if err != nil {
			return false
		}
		names, _ := f.Readdirnames(1)
		f.Close()
		if len(names) > 0 {
			return false
		}
	}
	return true
}
