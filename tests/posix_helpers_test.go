package tests

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// posixFS is one mounted union under test, with the directories behind it so
// that a test can check what landed on disk.
type posixFS struct {
	Dir    string   // merged mountpoint
	Upper  string   // upper directory; "" for a read-only mount
	Layers []string // lower layers, lowest first
}

// p joins names onto the mountpoint.
func (f posixFS) p(names ...string) string {
	return filepath.Join(append([]string{f.Dir}, names...)...)
}

// posixBackend mounts layers and an upper one way. Kernel overlayfs comes
// first: it is the oracle that proves each expectation is right for the
// kernel's own union before strata is held to it.
type posixBackend struct {
	name  string
	mount func(t *testing.T, layers []string, upper string) string
}

var posixBackends = []posixBackend{
	{"overlay", func(t *testing.T, l []string, u string) string { return mountOverlay(t, l, u) }},
	{"strata", func(t *testing.T, l []string, u string) string { return mountStrata(t, l, u).Dir }},
	{"strata-nopassthrough", func(t *testing.T, l []string, u string) string {
		return mountStrata(t, l, u, "--no-passthrough").Dir
	}},
	// strata serving the image open-less, kernel overlayfs on top.
	{"strata-kernel-overlay", func(t *testing.T, l []string, u string) string {
		return mountStrata(t, l, u, "--kernel-overlay").Dir
	}},
}

// layerSpec describes one lower layer: path -> content. A path ending in "/"
// is a directory, content "symlink:T" makes a symlink to T, content
// "whiteout:" an overlayfs whiteout (char device 0/0, which kernel overlayfs
// and strata both read), anything else a 0644 regular file. Parents are
// created as needed.
type layerSpec map[string]string

// posixCase is what one test mounts: layers built fresh for every backend,
// with or without an upper.
type posixCase struct {
	layers   []layerSpec
	readOnly bool
	// prepare, if set, runs on the fresh layer and upper dirs before mounting
	// (for things a spec cannot say: ownership, modes, device nodes, links).
	prepare func(t *testing.T, layers []string, upper string)
}

// run mounts the case on every backend and runs check on each, as subtests
// named after the backend. Whatever check does, the lower layers must come
// out exactly as they went in.
func (c posixCase) run(t *testing.T, check func(t *testing.T, fs posixFS)) {
	t.Helper()
	for _, b := range posixBackends {
		t.Run(b.name, func(t *testing.T) {
			fs := c.build(t)
			before := snapshotLayers(t, fs.Layers)
			fs.Dir = b.mount(t, fs.Layers, fs.Upper)
			check(t, fs)
			after := snapshotLayers(t, fs.Layers)
			for p, was := range before {
				if after[p] != was {
					t.Errorf("lower layer changed: %s was %q, is %q", p, was, after[p])
				}
			}
			for p, is := range after {
				if _, ok := before[p]; !ok {
					t.Errorf("lower layer changed: %s appeared (%q)", p, is)
				}
			}
		})
	}
}

// snapshotLayers describes every entry of the layers: type, mode, owner,
// size, mtime and content (atime and ctime are left out: reading moves the
// one, and neither is data).
func snapshotLayers(t *testing.T, layers []string) map[string]string {
	t.Helper()
	snap := map[string]string{}
	for i, l := range layers {
		err := filepath.WalkDir(l, func(p string, _ iofs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			st := lstat(t, p)
			desc := fmt.Sprintf("mode %o owner %d:%d size %d mtime %d.%09d rdev %d",
				st.Mode, st.Uid, st.Gid, st.Size, st.Mtim.Sec, st.Mtim.Nsec, st.Rdev)
			switch st.Mode & unix.S_IFMT {
			case unix.S_IFREG:
				desc += " sha256 " + fileSum(t, p)
			case unix.S_IFLNK:
				target, err := os.Readlink(p)
				must(t, err)
				desc += " -> " + target
			}
			rel, _ := filepath.Rel(l, p)
			snap[fmt.Sprintf("layer %d: %s", i, rel)] = desc
			return nil
		})
		must(t, err)
	}
	return snap
}

func fileSum(t *testing.T, p string) string {
	f, err := os.Open(p)
	must(t, err)
	defer f.Close()
	h := sha256.New()
	_, err = io.Copy(h, f)
	must(t, err)
	return hex.EncodeToString(h.Sum(nil))
}

func (c posixCase) build(t *testing.T) posixFS {
	t.Helper()
	var fs posixFS
	for _, spec := range c.layers {
		dir := t.TempDir()
		writeLayer(t, dir, spec)
		fs.Layers = append(fs.Layers, dir)
	}
	if !c.readOnly {
		fs.Upper = filepath.Join(t.TempDir(), "upper")
		must(t, os.Mkdir(fs.Upper, 0o755))
	}
	if c.prepare != nil {
		c.prepare(t, fs.Layers, fs.Upper)
	}
	for _, d := range append(append([]string{}, fs.Layers...), fs.Upper) {
		if d != "" {
			// t.TempDir is 0700; the union root takes its mode from here
			// and the uid 1000 checks need to get in.
			must(t, os.Chmod(d, 0o755))
		}
	}
	return fs
}

func writeLayer(t *testing.T, dir string, spec layerSpec) {
	t.Helper()
	for p, content := range spec {
		full := filepath.Join(dir, p)
		must(t, os.MkdirAll(filepath.Dir(full), 0o755))
		switch {
		case strings.HasSuffix(p, "/"):
			must(t, os.MkdirAll(full, 0o755))
		case content == "whiteout:":
			must(t, unix.Mknod(full, unix.S_IFCHR|0o000, 0))
		case strings.HasPrefix(content, "symlink:"):
			must(t, os.Symlink(strings.TrimPrefix(content, "symlink:"), full))
		default:
			must(t, os.WriteFile(full, []byte(content), 0o644))
		}
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// wantErrno fails unless err carries errno.
func wantErrno(t testing.TB, err error, errno unix.Errno, what string) {
	t.Helper()
	if !errors.Is(err, errno) {
		t.Errorf("%s: got error %v, want %v (%s)", what, err, errno, unix.ErrnoName(errno))
	}
}

func wantFile(t testing.TB, path, want string) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("read %s: %v", path, err)
		return
	}
	if string(got) != want {
		t.Errorf("%s holds %q, want %q", path, clip(got), clip([]byte(want)))
	}
}

func clip(b []byte) string {
	if len(b) > 64 {
		return string(b[:64]) + "..."
	}
	return string(b)
}

func lstat(t testing.TB, path string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		t.Fatalf("lstat %s: %v", path, err)
	}
	return st
}

func isZero(b []byte) bool {
	return len(bytes.Trim(b, "\x00")) == 0
}

// dirent is one record of getdents64.
type dirent struct {
	Ino  uint64
	Off  int64
	Type uint8
	Name string
}

// parseDirents decodes a getdents64 buffer.
func parseDirents(buf []byte) []dirent {
	var out []dirent
	for len(buf) >= 19 {
		reclen := int(binary.NativeEndian.Uint16(buf[16:18]))
		if reclen < 19 || reclen > len(buf) {
			break
		}
		name := buf[19:reclen]
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		out = append(out, dirent{
			Ino:  binary.NativeEndian.Uint64(buf[0:8]),
			Off:  int64(binary.NativeEndian.Uint64(buf[8:16])),
			Type: buf[18],
			Name: string(name),
		})
		buf = buf[reclen:]
	}
	return out
}

// getdentsAll reads fd to its end with getdents64 calls of bufSize bytes.
func getdentsAll(t testing.TB, fd, bufSize int) []dirent {
	t.Helper()
	var all []dirent
	buf := make([]byte, bufSize)
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			t.Fatalf("getdents: %v", err)
		}
		if n == 0 {
			return all
		}
		all = append(all, parseDirents(buf[:n])...)
	}
}

// runAsUser runs argv as uid/gid 1000 with no supplementary groups, the way
// an unprivileged user in a container touches the mount, and returns its
// combined output.
func runAsUser(t testing.TB, argv ...string) (string, error) {
	t.Helper()
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Fatalf("setpriv (util-linux) is needed to act as uid 1000: %v", err)
	}
	args := append([]string{"--reuid=1000", "--regid=1000", "--clear-groups", "--"}, argv...)
	out, err := exec.Command(setpriv, args...).CombinedOutput()
	return string(out), err
}

// openMountPath lets uid 1000 reach the mountpoint: t.TempDir makes its
// parent 0700.
func openMountPath(t testing.TB, fs posixFS) {
	t.Helper()
	must(t, os.Chmod(filepath.Dir(fs.Dir), 0o755))
}

// withUmask sets the process umask for the rest of the test.
func withUmask(t testing.TB, mask int) {
	old := unix.Umask(mask)
	t.Cleanup(func() { unix.Umask(old) })
}
