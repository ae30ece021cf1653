package cache

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	digest "github.com/opencontainers/go-digest"
)

// maxRefSize bounds a ref file's size, so that a planted file cannot make
// Ref read much: a reference name is at most a few hundred bytes.
const maxRefSize = 4 << 10

// refPath is where the ref named name lives: DIR/refs/XX/HEX, HEX being
// the SHA-256 of the name (names hold slashes and colons).
func (s *Store) refPath(name string) string {
	sum := sha256.Sum256([]byte(name))
	h := hex.EncodeToString(sum[:])
	return filepath.Join(s.dir, "refs", h[:2], h)
}

// Ref returns the digest SetRef last recorded for name. A ref file that
// is unreadable, names another reference or holds no valid digest is a
// miss. A ref is not an entry: nothing checks that its digest is what the
// name means now, only that it is a digest; what it names is verified
// when it is read, as every entry is.
func (s *Store) Ref(name string) (digest.Digest, bool) {
	f, err := os.Open(s.refPath(name))
	if err != nil {
		return "", false
	}
	defer f.Close()
	buf := make([]byte, maxRefSize+1)
	n, _ := f.Read(buf)
	if n == 0 || n > maxRefSize {
		return "", false
	}
	stored, d, ok := bytes.Cut(bytes.TrimSuffix(buf[:n], []byte("\n")), []byte("\n"))
	if !ok || string(stored) != name {
		return "", false
	}
	dg, err := digest.Parse(string(d))
	if err != nil {
		return "", false
	}
	return dg, true
}

// SetRef records that name (an image reference such as
// registry/repo:tag) points to d, replacing what it pointed to before. The
// file appears whole or not at all (a temp file renamed over it).
func (s *Store) SetRef(name string, d digest.Digest) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("cache: ref %q: %w", name, err)
	}
	if len(name)+len(d)+2 > maxRefSize {
		return fmt.Errorf("cache: ref %q: name too long", name)
	}
	f, err := s.createTemp()
	if err != nil {
		return err
	}
	if _, err := f.WriteString(name + "\n" + d.String() + "\n"); err != nil {
		s.abort(f)
		return fmt.Errorf("cache: ref %q: %w", name, err)
	}
	if s.opts.sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("cache: ref %q: %w", name, err)
	}
	p := s.refPath(name)
	err = os.Rename(f.Name(), p)
	if errors.Is(err, fs.ErrNotExist) {
		if err = os.MkdirAll(filepath.Dir(p), 0o755); err == nil {
			err = os.Rename(f.Name(), p)
		}
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("cache: ref %q: %w", name, err)
	}
	return nil
}
