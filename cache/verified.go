package cache

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	digest "github.com/opencontainers/go-digest"
)

// WithVerifiedDir shares the memo of verified file entries (see "Reading
// files" in the package documentation) through dir: a record per file
// entry and identity its Store verified by hashing. A Store given the same
// dir, in another process, trusts a record as it trusts its own memo, so a
// new process opens the files an earlier one verified without hashing them
// again: 5-9 ms for a 7 MB library, on the path of a container's start.
// dir must be writable only by those trusted as much as strata's own
// processes: strata keeps it in its runtime directory (/run/strata),
// root's, and gone at reboot. dir is made if missing.
//
// A record is an empty file whose name is the digest and the identity,
// ALG-HEX.DEV.INO.SIZE.MTIME: made at once (O_EXCL), looked up with one
// stat, and on tmpfs an inode and no page of memory.
func WithVerifiedDir(dir string) Option {
	return func(o *options) error {
		if dir == "" {
			return errors.New("cache: verified dir: empty path")
		}
		o.verifiedDir = dir
		return nil
	}
}

// recordPrefix is what the names of d's records start with.
func (s *Store) recordPrefix(d digest.Digest) string {
	return filepath.Join(s.opts.verifiedDir, string(d.Algorithm())+"-"+d.Encoded())
}

func (s *Store) recordPath(d digest.Digest, key fileKey) string {
	return fmt.Sprintf("%s.%d.%d.%d.%d", s.recordPrefix(d), key.dev, key.ino, key.size, key.mtime)
}

// recorded reports whether a Store sharing the verified dir has verified
// d's entry with the identity key.
func (s *Store) recorded(d digest.Digest, key fileKey) bool {
	if s.opts.verifiedDir == "" || key == (fileKey{}) {
		return false
	}
	info, err := os.Lstat(s.recordPath(d, key))
	return err == nil && info.Mode().IsRegular()
}

// record notes, for every Store sharing the verified dir, that d's entry
// with the identity key has been verified.
func (s *Store) record(d digest.Digest, key fileKey) {
	if s.opts.verifiedDir == "" || key == (fileKey{}) {
		return
	}
	err := s.createRecord(d, key)
	if errors.Is(err, fs.ErrNotExist) {
		if err = os.MkdirAll(s.opts.verifiedDir, 0o700); err == nil {
			err = s.createRecord(d, key)
		}
	}
	if err != nil && !errors.Is(err, fs.ErrExist) {
		s.opts.logger.Warn("cache: record a verified file", "digest", d, "err", err)
	}
}

func (s *Store) createRecord(d digest.Digest, key fileKey) error {
	f, err := os.OpenFile(s.recordPath(d, key), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	return f.Close()
}

// unrecord removes the record of d's entry with the identity key, which
// is gone; with all, every record of d, whose entry failed: it may have
// been verified with another identity before it was damaged. all lists
// the directory, so eviction, which knows what it removes, does not ask
// for it.
func (s *Store) unrecord(d digest.Digest, key fileKey, all bool) {
	if s.opts.verifiedDir == "" {
		return
	}
	os.Remove(s.recordPath(d, key))
	if !all {
		return
	}
	old, _ := filepath.Glob(s.recordPrefix(d) + ".*")
	for _, p := range old {
		os.Remove(p)
	}
}
