package tests

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/containerd/stargz-snapshotter/estargz/zstdchunked"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"
)

// The registry mode (strata mount REF MNT) against the same image extracted
// to disk: a lazily read image must be indistinguishable from its layers.

// TestRegistryMountDifferential mounts the image by tag and compares the
// whole tree with a --layer mount of the extracted tars and with kernel
// overlayfs over the same tars in overlayfs form.
func TestRegistryMountDifferential(t *testing.T) {
	fx := registryFixture(t)
	for _, f := range lazyFormats {
		t.Run(string(f), func(t *testing.T) {
			ref := startRegistry(t, nil) + "/strata/app:" + string(f)
			pushImage(t, ref, lazyImage(t, fx.blobs[f]))
			checkPulled(t, ref, fx.blobs[f])

			reg := mountRegistry(t, ref, "")
			local := mountStrata(t, extractLayers(t, fx.layers, formOCI), "")
			ovl := mountOverlay(t, extractLayers(t, fx.layers, formOverlay), "")
			want := captureTree(t, local.Dir, viewMerged)
			checkImageTree(t, "--layer mount", want, fx)
			got := captureTree(t, reg.Dir, viewMerged)
			compareTreesNamed(t, "registry mount vs --layer mount of the extracted tars", "layers", "registry", want, got)
			compareTreesNamed(t, "registry mount vs kernel overlayfs", "overlayfs", "registry",
				captureTree(t, ovl, viewMerged), got)
			err := os.WriteFile(filepath.Join(reg.Dir, "etc", "x"), []byte("x"), 0o644)
			if !errors.Is(err, unix.EROFS) {
				t.Errorf("write to a registry mount without --upper: %v, want EROFS", err)
			}
		})
	}
}

// checkImageTree pins what the image must look like, so that two mounts
// that agree on a wrong tree (or on an empty one) do not pass.
func checkImageTree(t *testing.T, what string, tree map[string]string, fx *regFixture) {
	t.Helper()
	big := fx.baseFile("usr/lib/big")
	want := map[string]string{
		"etc/passwd":           "file perm=0644 uid=0 gid=0 mtime=epoch size=30 ",
		"etc/config":           "file perm=0600 uid=5 gid=6 mtime=epoch size=10 ",
		"etc/shadow":           "file perm=0640 uid=0 gid=42 ",
		"etc/empty":            "file perm=0600 uid=0 gid=0 mtime=epoch size=0 ",
		"etc/new":              "file perm=0644",
		"etc/dangling":         "target=/nonexistent/target",
		"etc":                  "dir perm=0755 uid=0 gid=0 mtime=epoch",
		"etc/":                 "config:file dangling:symlink empty:file new:file passwd:file shadow:file",
		"usr/bin/":             "suid:file tool:file tool-third:file",
		"usr/bin/tool-third":   "nlink=3 same-inode-as=usr/bin/tool",
		"usr/bin/suid":         "perm=4755",
		"usr/lib/big":          "size=1500000 sha256=" + hash16(big),
		"usr/lib/exact1":       "file perm=0444 uid=0 gid=0 mtime=epoch size=131073 ",
		"usr/share/doc":        "dir perm=2755 uid=0 gid=50",
		"usr/share/doc/readme": `xattrs={user.mime="text/plain"}`,
		"var/":                 "cache:dir",
		"var/cache":            "dir perm=0700",
		"var/cache/":           "fresh:file",
		"opt/app":              "dir perm=0750",
		"opt/app/":             "new.so:file",
		"opt/implied":          "dir perm=0755 uid=0 gid=0 mtime=1970-01-01T00:00:00Z",
		"srv/thing/":           "inside:file",
		"tmp":                  "dir perm=1777 uid=0 gid=0 mtime=epoch",
		"tmp/implied":          "dir perm=0755 uid=0 gid=0 mtime=1970-01-01T00:00:00Z",
		"home/user":            "dir perm=0700 uid=1000 gid=1000 mtime=epoch",
		"dev/null":             "char perm=0666 uid=0 gid=0 mtime=epoch rdev=1:3",
		"dev/initctl":          "fifo perm=0600",
		".":                    "dir perm=0755 uid=0 gid=0",
		"./":                   "dev:dir etc:dir home:dir opt:dir srv:dir tmp:dir usr:dir var:dir",
	}
	for _, p := range slices.Sorted(maps.Keys(want)) {
		if !strings.Contains(tree[p], want[p]) {
			t.Errorf("%s: %s is %q, want it to contain %q", what, p, tree[p], want[p])
		}
	}
}

// TestRegistryMountByDigestWithUpper writes through a registry mount pinned
// by digest and checks the upper is in overlayfs's format: kernel overlayfs
// over the extracted layers plus that upper shows the same tree.
func TestRegistryMountByDigestWithUpper(t *testing.T) {
	fx := registryFixture(t)
	for _, f := range lazyFormats {
		t.Run(string(f), func(t *testing.T) {
			ref := startRegistry(t, nil) + "/strata/app:" + string(f)
			byDigest := pushImage(t, ref, lazyImage(t, fx.blobs[f]))
			upper := filepath.Join(t.TempDir(), "upper")
			if err := os.Mkdir(upper, 0o755); err != nil {
				t.Fatal(err)
			}
			m := mountRegistry(t, byDigest, upper)
			patched := writeThrough(t, m.Dir, fx.baseFile("usr/lib/big"))
			merged := captureTree(t, m.Dir, viewMerged)
			m.unmount(t)
			checkUpper(t, upper, patched)
			layers := extractLayers(t, fx.layers, formOverlay)
			ovl := mountOverlay(t, append(layers, upper), "")
			compareTreesNamed(t, "registry mount with upper vs kernel overlayfs over layers+upper", "overlayfs", "registry",
				captureTree(t, ovl, viewMerged), merged)
		})
	}
}

// patchOff lands in the middle of a chunk of usr/lib/big, far from its start.
const patchOff = 1_000_003

// writeThrough creates a file, patches a many-chunk lower file in place,
// deletes a lower file and a lower directory, checks the merged view, and
// returns the patched file's expected content.
func writeThrough(t *testing.T, mnt string, big []byte) []byte {
	t.Helper()
	want := bytes.Clone(big)
	copy(want[patchOff:], "PATCHED")
	if err := os.WriteFile(filepath.Join(mnt, "etc/created"), []byte("created\n"), 0o644); err != nil {
		t.Fatalf("create: %v", err)
	}
	f, err := os.OpenFile(filepath.Join(mnt, "usr/lib/big"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatalf("open lower file for writing: %v", err)
	}
	if _, err := f.WriteAt([]byte("PATCHED"), patchOff); err != nil {
		t.Fatalf("write lower file: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(mnt, "etc/passwd")); err != nil {
		t.Fatalf("remove lower file: %v", err)
	}
	if err := os.RemoveAll(filepath.Join(mnt, "var/cache")); err != nil {
		t.Fatalf("remove lower dir: %v", err)
	}
	if got, err := os.ReadFile(filepath.Join(mnt, "usr/lib/big")); err != nil || !bytes.Equal(got, want) {
		t.Errorf("patched file reads back wrong (len %d, err %v)", len(got), err)
	}
	for _, p := range []string{"etc/passwd", "var/cache"} {
		if _, err := os.Lstat(filepath.Join(mnt, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after removal: %v, want ENOENT", p, err)
		}
	}
	return want
}

// checkUpper checks the upper holds exactly the changes, in overlayfs form.
func checkUpper(t *testing.T, upper string, patched []byte) {
	t.Helper()
	tree := captureTree(t, upper, viewUpper)
	want := map[string]string{
		"etc":         "dir perm=0755 uid=0 gid=0 mtime=now",
		"etc/created": "file perm=0644 uid=0 gid=0 mtime=now size=8 sha256=" + hash16([]byte("created\n")),
		"etc/passwd":  "whiteout",
		"usr":         "dir perm=0755 uid=0 gid=0",
		"usr/lib":     "dir perm=0755 uid=0 gid=0",
		"usr/lib/big": fmt.Sprintf("file perm=0644 uid=0 gid=0 mtime=now size=%d sha256=%s", len(patched), hash16(patched)),
		"var":         "dir perm=0755 uid=0 gid=0 mtime=now",
		"var/cache":   "whiteout",
		".":           "dir",
	}
	for p, w := range want {
		if !strings.HasPrefix(tree[p], w) {
			t.Errorf("upper %s is %q, want it to start with %q", p, tree[p], w)
		}
	}
	for p := range tree {
		if _, ok := want[p]; !ok {
			t.Errorf("upper has unexpected %s: %s", p, tree[p])
		}
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(upper, "etc/passwd"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("upper etc/passwd: mode %o rdev %d (%v), want a char device 0/0", st.Mode, st.Rdev, err)
	}
}

// TestRegistryMountCorruptBlob serves a base layer blob with one byte of
// one chunk of a many-chunk file flipped: reading that chunk must fail with
// EIO, never give wrong bytes, and leave every other file readable.
func TestRegistryMountCorruptBlob(t *testing.T) {
	fx := registryFixture(t)
	for _, f := range lazyFormats {
		t.Run(string(f), func(t *testing.T) {
			blob := fx.blobs[f][0].blob
			bad, at := corruptChunk(t, blob, f, "usr/lib/big", 5*regChunkSize)
			digest, _ := blobLayer{fx.blobs[f][0]}.Digest()
			var armed atomic.Bool
			var served atomic.Int64
			ref := startRegistry(t, func(next http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if armed.Load() && strings.HasSuffix(r.URL.Path, "/blobs/"+digest.String()) {
						served.Add(1)
						w.Header().Set("Content-Type", "application/octet-stream")
						w.Header().Set("Docker-Content-Digest", digest.String())
						http.ServeContent(w, r, "", buildEpoch, bytes.NewReader(bad))
						return
					}
					next.ServeHTTP(w, r)
				})
			}) + "/strata/app:" + string(f)
			pushImage(t, ref, lazyImage(t, fx.blobs[f]))
			checkPulled(t, ref, fx.blobs[f])
			armed.Store(true)

			reg := mountRegistry(t, ref, "")
			local := mountStrata(t, extractLayers(t, fx.layers, formOCI), "")
			checkCorruptReads(t, filepath.Join(reg.Dir, "usr/lib/big"), fx.baseFile("usr/lib/big"))
			diffs := diffTrees(captureTree(t, local.Dir, viewMerged), captureTree(t, reg.Dir, viewMerged), "layers", "registry", 20)
			if len(diffs) != 1 || !strings.HasPrefix(diffs[0], "usr/lib/big\n") || !strings.Contains(diffs[0], "sha256=read-error:EIO") {
				t.Errorf("want only usr/lib/big to differ (read-error:EIO); byte %d flipped; diffs:\n  %s", at, strings.Join(diffs, "\n  "))
			}
			if served.Load() == 0 {
				t.Error("the corrupt blob was never fetched: the test proved nothing")
			}
		})
	}
}

// corruptChunk flips a byte in the middle of the compressed range of the
// chunk of file name that holds offset off, well away from the TOC.
func corruptChunk(t *testing.T, blob []byte, f lazyFormat, name string, off int64) ([]byte, int64) {
	t.Helper()
	var opts []estargz.OpenOption
	if f == fmtZstd {
		opts = append(opts, estargz.WithDecompressors(new(zstdchunked.Decompressor)))
	}
	r, err := estargz.Open(io.NewSectionReader(bytes.NewReader(blob), 0, int64(len(blob))), opts...)
	if err != nil {
		t.Fatal(err)
	}
	ce, ok1 := r.ChunkEntryForOffset(name, off)
	next, ok2 := r.ChunkEntryForOffset(name, off+regChunkSize)
	if !ok1 || !ok2 || next.Offset <= ce.Offset {
		t.Fatalf("chunks of %s at %d: %v %v", name, off, ce, next)
	}
	at := ce.Offset + (next.Offset-ce.Offset)/2
	bad := bytes.Clone(blob)
	bad[at] ^= 0x5a
	return bad, at
}

// checkCorruptReads reads the file whose chunk at 5*regChunkSize is bad:
// bytes before it may be read, the bad chunk must give EIO, every time.
func checkCorruptReads(t *testing.T, p string, want []byte) {
	t.Helper()
	fd, err := unix.Open(p, unix.O_RDONLY, 0)
	if err != nil {
		t.Fatalf("open %s: %v", p, err)
	}
	defer unix.Close(fd)
	buf := make([]byte, 4096)
	if n, err := unix.Pread(fd, buf, 0); err != nil || !bytes.Equal(buf[:n], want[:4096]) {
		t.Errorf("pread of an intact chunk: n=%d err=%v (bytes equal: %v)", n, err, bytes.Equal(buf[:max(n, 0)], want[:max(n, 0)]))
	}
	for i := range 2 {
		n, err := unix.Pread(fd, buf[:100], 5*regChunkSize+10)
		if !errors.Is(err, unix.EIO) {
			t.Errorf("pread #%d of the corrupt chunk: n=%d err=%v, want EIO (bytes equal: %v)",
				i, n, err, n > 0 && bytes.Equal(buf[:n], want[5*regChunkSize+10:][:n]))
		}
	}
	got, err := readAllFd(fd)
	if !errors.Is(err, unix.EIO) || len(got) > 5*regChunkSize || !bytes.Equal(got, want[:len(got)]) {
		t.Errorf("sequential read: %d bytes (correct prefix: %v), err %v; want EIO before offset %d",
			len(got), bytes.Equal(got, want[:min(len(got), len(want))]), err, 5*regChunkSize)
	}
}

func readAllFd(fd int) ([]byte, error) {
	var out []byte
	buf := make([]byte, 128<<10)
	for off := int64(0); ; {
		n, err := unix.Pread(fd, buf, off)
		if err != nil {
			return out, err
		}
		if n == 0 {
			return out, nil
		}
		out = append(out, buf[:n]...)
		off += int64(n)
	}
}

// TestRegistryMountRefusals: an image strata cannot read lazily, or one
// that is not there, is refused with one clear line and exit status 1,
// and nothing is left mounted.
func TestRegistryMountRefusals(t *testing.T) {
	host := startRegistry(t, nil)
	plain, err := random.Layer(2048, types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	pushImage(t, host+"/strata/plain:latest", imageOf(t, []v1.Layer{plain}, make([]map[string]string, 1)))
	odd, err := random.Layer(1024, types.MediaType("application/vnd.example.layer.v1+unknown"))
	if err != nil {
		t.Fatal(err)
	}
	pushImage(t, host+"/strata/odd:latest", imageOf(t, []v1.Layer{plain, odd}, make([]map[string]string, 2)))
	oddDigest, _ := odd.Digest()

	tests := []struct {
		name, ref string
		anyOf     []string // the error line says at least one of these
	}{
		{"unknown layer media type", host + "/strata/odd:latest", []string{oddDigest.Hex[:12], "media type"}},
		{"missing tag", host + "/strata/plain:nosuchtag", []string{"not found", "unknown", "nosuchtag"}},
		{"missing digest", host + "/strata/plain@sha256:" + strings.Repeat("ab", 32), []string{"not found", "unknown", "abab"}},
		{"missing repository", host + "/strata/nothere:latest", []string{"not found", "unknown", "nothere"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mnt := t.TempDir()
			err, stderr := runRefused(t, tc.ref, mnt)
			if isMounted(mnt) {
				unix.Unmount(mnt, unix.MNT_DETACH)
				t.Error("a mount was left behind")
			}
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Errorf("exit: %v, want status 1", err)
			}
			msg := strings.TrimSpace(stderr)
			t.Logf("stderr: %s", msg)
			if strings.Count(msg, "\n") != 0 || !strings.HasPrefix(msg, "strata: ") {
				t.Errorf("stderr %q: want one line starting with 'strata: '", msg)
			}
			if !slices.ContainsFunc(tc.anyOf, func(s string) bool { return strings.Contains(strings.ToLower(msg), s) }) {
				t.Errorf("stderr %q says none of %q", msg, tc.anyOf)
			}
		})
	}
}

// TestRegistryMountPlainLayers: images whose layers have no TOC (ordinary
// gzip, alone or under lazy layers) mount too, by streaming those layers,
// and show the same tree as the extracted tars.
func TestRegistryMountPlainLayers(t *testing.T) {
	fx := registryFixture(t)
	host := startRegistry(t, nil)
	var plain []v1.Layer
	for _, tr := range fx.tars {
		plain = append(plain, plainLayer(t, tr))
	}
	lazyBlobs := fx.blobs[lazyFormats[0]]
	images := map[string]v1.Image{
		"all plain gzip": imageOf(t, plain, make([]map[string]string, len(plain))),
		"lazy layers under a plain one": imageOf(t,
			[]v1.Layer{blobLayer{lazyBlobs[0]}, blobLayer{lazyBlobs[1]}, plain[2]},
			[]map[string]string{lazyBlobs[0].annotations, lazyBlobs[1].annotations, nil}),
	}
	want := captureTree(t, mountStrata(t, extractLayers(t, fx.layers, formOCI), "").Dir, viewMerged)
	checkImageTree(t, "--layer mount", want, fx)
	for name, img := range images {
		t.Run(name, func(t *testing.T) {
			ref := host + "/strata/" + strings.ReplaceAll(name, " ", "-") + ":latest"
			pushImage(t, ref, img)
			m := mountRegistry(t, ref, "")
			compareTreesNamed(t, "registry mount of "+name+" vs --layer mount", "layers", "registry",
				want, captureTree(t, m.Dir, viewMerged))
		})
	}
}
