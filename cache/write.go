package cache

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// createTemp creates a new temp file in DIR/tmp and locks it (flock,
// exclusive) for as long as it stays open, so that stale-file removal in
// any process can tell a live writer's file from a dead one's.
func (s *Store) createTemp() (*os.File, error) {
	f, err := os.CreateTemp(s.tmp, s.tmpPrefix+"*")
	if errors.Is(err, fs.ErrNotExist) {
		// Someone cleared the cache by removing its directories.
		if err = os.MkdirAll(s.tmp, 0o755); err == nil {
			f, err = os.CreateTemp(s.tmp, s.tmpPrefix+"*")
		}
	}
	if err != nil {
		return nil, fmt.Errorf("cache: create temp file: %w", err)
	}
	if err := flock(f, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		s.abort(f)
		return nil, fmt.Errorf("cache: lock temp file: %w", err)
	}
	return f, nil
}

// abort closes and removes a temp file that will not become an entry.
func (s *Store) abort(f *os.File) {
	f.Close()
	os.Remove(f.Name())
}

// commit makes the filled temp file f the entry at p: it closes f and
// renames it onto p unless p already exists. It reports the identity of
// the file stored and whether this call stored it; either way, f is gone
// from DIR/tmp when commit returns.
func (s *Store) commit(f *os.File, p string) (fileKey, bool, error) {
	key, err := s.finish(f)
	if err != nil {
		s.abort(f)
		return fileKey{}, false, err
	}
	err = s.rename(f.Name(), p)
	if errors.Is(err, fs.ErrExist) {
		os.Remove(f.Name())
		return fileKey{}, false, nil
	}
	if err != nil {
		os.Remove(f.Name())
		return fileKey{}, false, err
	}
	return key, true, nil
}

// finish makes f readable by all, syncs it if asked, and closes it,
// returning the identity it has from now on (nothing writes to it again).
func (s *Store) finish(f *os.File) (fileKey, error) {
	err := f.Chmod(0o644)
	if err == nil && s.opts.sync {
		err = f.Sync()
	}
	var info fs.FileInfo
	if err == nil {
		info, err = f.Stat()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fileKey{}, fmt.Errorf("cache: write %s: %w", f.Name(), err)
	}
	return keyOf(info), nil
}

// rename moves tmp to p unless p exists (an error wrapping fs.ErrExist),
// creating the fan-out directory on first use (trying first saves a
// syscall on every Put after that).
func (s *Store) rename(tmp, p string) error {
	err := renameNoReplace(tmp, p)
	if errors.Is(err, fs.ErrNotExist) {
		if err = os.MkdirAll(filepath.Dir(p), 0o755); err == nil {
			err = renameNoReplace(tmp, p)
		}
	}
	if err == nil && s.opts.sync {
		err = syncDir(filepath.Dir(p))
	}
	if err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("cache: store %s: %w", p, err)
	}
	return err
}

// renameNoReplace renames old to new only if new does not exist, in one
// step (renameat2 RENAME_NOREPLACE), so that of two writers of one entry
// exactly one stores it and counts it in the usage record. A file system
// without RENAME_NOREPLACE gets a check then a rename: a race there
// counts an entry twice, which the next reconciling scan corrects.
func renameNoReplace(old, new string) error {
	err := unix.Renameat2(unix.AT_FDCWD, old, unix.AT_FDCWD, new, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		if _, serr := os.Lstat(new); serr == nil {
			return &os.LinkError{Op: "rename", Old: old, New: new, Err: syscall.EEXIST}
		}
		return os.Rename(old, new)
	}
	if err != nil {
		return &os.LinkError{Op: "renameat2", Old: old, New: new, Err: err}
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

// flock applies flock(2) operation how to f, retrying on EINTR.
func flock(f *os.File, how int) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	err = rc.Control(func(fd uintptr) {
		for {
			ferr = unix.Flock(int(fd), how)
			if ferr != unix.EINTR {
				return
			}
		}
	})
	if err != nil {
		return err
	}
	return ferr
}

// removeStale deletes temp files last written before cutoff that no
// writer holds locked, and reports how many it removed and their bytes.
// Another process may be doing the same, so a file vanishing under it is
// normal.
func (s *Store) removeStale(cutoff time.Time) (n, bytes int64) {
	ents, err := os.ReadDir(s.tmp)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.opts.logger.Warn("cache: list temp files", "err", err)
		}
		return 0, 0
	}
	for _, e := range ents {
		info, err := e.Info()
		if err != nil || !info.ModTime().Before(cutoff) {
			continue
		}
		p := filepath.Join(s.tmp, e.Name())
		if err := removeTemp(p, info); err != nil {
			if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, unix.EWOULDBLOCK) {
				s.opts.logger.Warn("cache: remove stale temp file", "path", p, "err", err)
			}
			continue
		}
		n++
		bytes += info.Size()
	}
	return n, bytes
}

// removeTemp removes the temp file p unless a writer still holds it
// (EWOULDBLOCK). Temp names are never reused, so the file locked is the
// file removed.
func removeTemp(p string, info fs.FileInfo) error {
	if !info.Mode().IsRegular() {
		return os.RemoveAll(p)
	}
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := flock(f, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return err
	}
	return os.Remove(p)
}

// touchAfter is how stale an entry's recorded last use must be before a
// hit records a new one: a hot entry then costs one utimensat a minute,
// not one per hit, and eviction order is still right to the minute.
const touchAfter = time.Minute

// touch records a use of the entry at p, whose state before the use is
// info, by setting its atime to now. The mtime is left alone (UTIME_OMIT):
// it is part of a file entry's verified identity. Kernel atime updates
// (relatime, noatime) are not relied on: they are off on many mounts and
// at most daily on the rest.
func (s *Store) touch(p string, info fs.FileInfo) {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		s.touchStat(p, &unix.Stat_t{Atim: unix.Timespec{Sec: st.Atim.Sec, Nsec: st.Atim.Nsec}})
	}
}

// touchStat is touch for the entry whose status before the use is st
// (only its atime counts).
func (s *Store) touchStat(p string, st *unix.Stat_t) {
	now := time.Now()
	if now.Sub(time.Unix(st.Atim.Unix())) < touchAfter {
		return
	}
	s.setAtime(p, now)
}

// setAtime sets p's atime to t, leaving its mtime.
func (s *Store) setAtime(p string, t time.Time) {
	ts := []unix.Timespec{unix.NsecToTimespec(t.UnixNano()), {Nsec: unix.UTIME_OMIT}}
	err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
	if err != nil && !errors.Is(err, unix.ENOENT) {
		s.opts.logger.Warn("cache: record use", "path", p, "err", err)
		return
	}
	s.touches.Add(1)
}
