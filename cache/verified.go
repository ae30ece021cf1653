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
// entry, DIR/ALG-HEX, holding the identity its Store verified by hashing.
// A Store given the same dir, in another process, trusts a record as it
// trusts its own memo, so a new process opens the files an earlier one
// verified without hashing them again: 5-9 ms for a 7 MB library, on the
// path of a container's start. dir must be writable only by those trusted
// as much as strata's own processes: strata keeps it in its runtime
// directory (/run/strata), root's, and gone at reboot. dir is made if
// missing.
func WithVerifiedDir(dir string) Option {
	return func(o *options) error {
		if dir == "" {
			return errors.New("cache: verified dir: empty path")
		}
		o.verifiedDir = dir
		return nil
	}
}

// maxRecordSize bounds what a record read takes: four decimal numbers.
const maxRecordSize = 128

func (s *Store) recordPath(d digest.Digest) string {
	return filepath.Join(s.opts.verifiedDir, string(d.Algorithm())+"-"+d.Encoded())
}

// recorded reports whether the shared record of d names the identity key.
func (s *Store) recorded(d digest.Digest, key fileKey) bool {
	if s.opts.verifiedDir == "" || key == (fileKey{}) {
		return false
	}
	f, err := os.Open(s.recordPath(d))
	if err != nil {
		return false
	}
	defer f.Close()
	buf := make([]byte, maxRecordSize)
	n, _ := f.Read(buf)
	var k fileKey
	if _, err := fmt.Sscanf(string(buf[:n]), "%d %d %d %d\n", &k.dev, &k.ino, &k.size, &k.mtime); err != nil {
		return false
	}
	return k == key
}

// record writes the shared record of d, replacing any: a temp file
// renamed over it, so that a reader sees a whole record or none.
func (s *Store) record(d digest.Digest, key fileKey) {
	if s.opts.verifiedDir == "" || key == (fileKey{}) {
		return
	}
	err := s.writeRecord(d, key)
	if errors.Is(err, fs.ErrNotExist) {
		if err = os.MkdirAll(s.opts.verifiedDir, 0o700); err == nil {
			err = s.writeRecord(d, key)
		}
	}
	if err != nil {
		s.opts.logger.Warn("cache: record a verified file", "digest", d, "err", err)
	}
}

func (s *Store) writeRecord(d digest.Digest, key fileKey) error {
	f, err := os.CreateTemp(s.opts.verifiedDir, ".tmp-*")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, "%d %d %d %d\n", key.dev, key.ino, key.size, key.mtime)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), s.recordPath(d))
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// unrecord removes the shared record of d, whose entry failed.
func (s *Store) unrecord(d digest.Digest) {
	if s.opts.verifiedDir != "" {
		os.Remove(s.recordPath(d))
	}
}
