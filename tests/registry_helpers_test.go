package tests

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/containerd/stargz-snapshotter/estargz/zstdchunked"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// This file builds a small but realistic three-layer image from generated
// tars, converts it to eStargz or zstd:chunked, pushes it to an in-process
// registry, and extracts the same tars to disk as the oracle's layers.

// regChunkSize is small so that the big files span many chunks.
const regChunkSize = 64 << 10

// The manifest annotation keys strata reads (containers/storage spells the
// zstd:chunked ones with "io.github.", unlike the estargz library).
const (
	annotZstdChecksum = "io.github.containers.zstd-chunked.manifest-checksum"
	annotZstdPosition = "io.github.containers.zstd-chunked.manifest-position"
)

// tarEnt is one entry of a generated layer tar.
type tarEnt struct {
	hdr  tar.Header
	data []byte
}

var otherTime = time.Date(2019, 8, 7, 6, 5, 4, 0, time.UTC)

func tDir(n string, mode int64, uid, gid int) tarEnt {
	return tarEnt{hdr: tar.Header{Typeflag: tar.TypeDir, Name: n + "/", Mode: mode, Uid: uid, Gid: gid}}
}

func tFile(n string, data []byte, mode int64) tarEnt {
	return tarEnt{hdr: tar.Header{Typeflag: tar.TypeReg, Name: n, Mode: mode, Size: int64(len(data))}, data: data}
}

func tSym(n, target string) tarEnt {
	return tarEnt{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: n, Linkname: target, Mode: 0o777}}
}

func tLink(n, target string) tarEnt {
	return tarEnt{hdr: tar.Header{Typeflag: tar.TypeLink, Name: n, Linkname: target}}
}

func tWhiteout(n string) tarEnt {
	return tFile(path.Join(path.Dir(n), ".wh."+path.Base(n)), nil, 0o644)
}

func tOpaque(dir string) tarEnt { return tFile(dir+"/.wh..wh..opq", nil, 0o644) }

func (e tarEnt) own(uid, gid int) tarEnt { e.hdr.Uid, e.hdr.Gid = uid, gid; return e }
func (e tarEnt) at(t time.Time) tarEnt   { e.hdr.ModTime = t; return e }
func (e tarEnt) xattr(k, v string) tarEnt {
	e.hdr.PAXRecords = map[string]string{"SCHILY.xattr." + k: v}
	return e
}

func randData(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// imageLayers is the image, base first. It covers what a real image has:
// every entry type, owners and special modes, xattrs, empty, one-chunk,
// exactly-chunk-sized and many-chunk files, hard links, then overrides,
// whiteouts of files, of a hard link's name and of a whole directory, an
// opaque directory, a file replaced by a directory, a directory re-created
// over a whiteout, and directories only implied by deeper names.
func imageLayers() [][]tarEnt {
	r := rand.New(rand.NewPCG(7, 11))
	base := []tarEnt{
		tDir("etc", 0o755, 0, 0), tFile("etc/passwd", []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644),
		tFile("etc/config", []byte("version=1\n"), 0o644), tFile("etc/removed", []byte("gone soon\n"), 0o644),
		tFile("etc/shadow", []byte("root:*:19000::::::\n"), 0o640).own(0, 42), tFile("etc/empty", nil, 0o600),
		tSym("etc/dangling", "/nonexistent/target"),
		tDir("usr", 0o755, 0, 0), tDir("usr/bin", 0o755, 0, 0),
		tFile("usr/bin/tool", randData(r, 200_000), 0o755), tLink("usr/bin/tool-alias", "usr/bin/tool"),
		tLink("usr/bin/tool-third", "usr/bin/tool"), tSym("usr/bin/sh", "tool"),
		tFile("usr/bin/suid", []byte("#!/bin/sh\necho hi\n"), 0o4755),
		tDir("usr/lib", 0o755, 0, 0), tFile("usr/lib/big", randData(r, 1_500_000), 0o644),
		tFile("usr/lib/exact", randData(r, regChunkSize), 0o644), tFile("usr/lib/exact1", randData(r, 2*regChunkSize+1), 0o444),
		tDir("usr/share", 0o755, 0, 0), tDir("usr/share/doc", 0o2755, 0, 50),
		tFile("usr/share/doc/readme", []byte("read me\n"), 0o644).xattr("user.mime", "text/plain"),
		tDir("var", 0o755, 0, 0), tDir("var/cache", 0o755, 0, 0), tDir("var/cache/apt", 0o755, 0, 0),
		tFile("var/cache/apt/pkg1", []byte("p1"), 0o644), tFile("var/cache/apt/pkg2", []byte("p2"), 0o644),
		tDir("opt", 0o755, 0, 0), tDir("opt/app", 0o755, 0, 0), tDir("opt/app/lib", 0o755, 0, 0),
		tFile("opt/app/lib/old.so", randData(r, 3000), 0o755), tFile("opt/app/config", []byte("old"), 0o644),
		tDir("home", 0o755, 0, 0), tDir("home/user", 0o700, 1000, 1000),
		tFile("home/user/.profile", []byte("export PATH\n"), 0o644).own(1000, 1000),
		tDir("tmp", 0o1777, 0, 0), tDir("srv", 0o755, 0, 0), tFile("srv/thing", []byte("a file"), 0o644),
		tDir("dev", 0o755, 0, 0),
		{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3}},
		{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "dev/initctl", Mode: 0o600}},
	}
	middle := []tarEnt{
		tDir("etc", 0o755, 0, 0).at(otherTime), tFile("etc/config", []byte("version=2\n"), 0o600).own(5, 6),
		tWhiteout("etc/removed"),
		tDir("usr", 0o755, 0, 0), tDir("usr/bin", 0o755, 0, 0), tWhiteout("usr/bin/tool-alias"),
		tDir("var", 0o755, 0, 0), tWhiteout("var/cache"),
		tDir("opt", 0o755, 0, 0), tDir("opt/app", 0o750, 0, 0), tOpaque("opt/app"),
		tFile("opt/app/new.so", randData(r, 5000), 0o755),
		tDir("srv", 0o755, 0, 0), tDir("srv/thing", 0o755, 0, 0), tFile("srv/thing/inside", []byte("in"), 0o644),
	}
	top := []tarEnt{
		tDir("etc", 0o755, 0, 0), tFile("etc/new", []byte("new in top\n"), 0o644),
		tDir("usr", 0o755, 0, 0), tDir("usr/bin", 0o755, 0, 0), tWhiteout("usr/bin/sh"),
		tDir("usr/lib", 0o755, 0, 0), tFile("usr/lib/another", randData(r, 1_100_000), 0o644),
		tDir("var", 0o755, 0, 0), tDir("var/cache", 0o700, 0, 0), tFile("var/cache/fresh", []byte("fresh"), 0o644),
		tDir("opt", 0o755, 0, 0), tFile("opt/implied/deep/file", []byte("deep"), 0o644),
		tFile("tmp/implied/file", []byte("under an implied /tmp"), 0o644),
		tFile("home/user/.cache/x", []byte("under an implied home/user"), 0o600).own(1000, 1000),
	}
	return [][]tarEnt{base, middle, top}
}

func makeLayerTar(t testing.TB, ents []tarEnt) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := e.hdr
		if h.ModTime.IsZero() {
			h.ModTime = buildEpoch
		}
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// lazyFormat is one of the two lazily readable layer formats.
type lazyFormat string

const (
	fmtEstargz lazyFormat = "estargz"
	fmtZstd    lazyFormat = "zstdchunked"
)

var lazyFormats = []lazyFormat{fmtEstargz, fmtZstd}

type zstdCompression struct {
	*zstdchunked.Compressor
	*zstdchunked.Decompressor
}

// lazyBlob is a converted layer: the blob and its manifest descriptor bits.
type lazyBlob struct {
	blob        []byte
	diffID      v1.Hash
	mediaType   types.MediaType
	annotations map[string]string
}

func buildLazyBlob(t testing.TB, tarData []byte, f lazyFormat) lazyBlob {
	t.Helper()
	opts := []estargz.Option{estargz.WithChunkSize(regChunkSize), estargz.WithCompressionLevel(gzip.BestSpeed)}
	meta := map[string]string{}
	if f == fmtZstd {
		c := &zstdCompression{&zstdchunked.Compressor{CompressionLevel: zstd.SpeedFastest, Metadata: meta}, &zstdchunked.Decompressor{}}
		opts = append(opts, estargz.WithCompression(c))
	}
	b, err := estargz.Build(io.NewSectionReader(bytes.NewReader(tarData), 0, int64(len(tarData))), opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	data, err := io.ReadAll(b)
	if err != nil {
		t.Fatal(err)
	}
	diffID, err := v1.NewHash(b.DiffID().String())
	if err != nil {
		t.Fatal(err)
	}
	out := lazyBlob{blob: data, diffID: diffID, mediaType: types.OCILayer, annotations: map[string]string{
		estargz.TOCJSONDigestAnnotation:         b.TOCDigest().String(),
		estargz.StoreUncompressedSizeAnnotation: fmt.Sprint(len(tarData)),
	}}
	if f == fmtZstd {
		out.mediaType = types.OCILayerZStd
		out.annotations = map[string]string{
			annotZstdChecksum: meta[zstdchunked.ManifestChecksumAnnotation],
			annotZstdPosition: meta[zstdchunked.ManifestPositionAnnotation],
		}
	}
	return out
}

// blobLayer is a v1.Layer over a blob already in memory.
type blobLayer struct{ lazyBlob }

func (l blobLayer) Digest() (v1.Hash, error) {
	return v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", sha256.Sum256(l.blob))}, nil
}
func (l blobLayer) DiffID() (v1.Hash, error)            { return l.diffID, nil }
func (l blobLayer) Size() (int64, error)                { return int64(len(l.blob)), nil }
func (l blobLayer) MediaType() (types.MediaType, error) { return l.mediaType, nil }
func (l blobLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.blob)), nil
}
func (l blobLayer) Uncompressed() (io.ReadCloser, error) { return decompress(l.blob, l.mediaType) }

func decompress(blob []byte, mt types.MediaType) (io.ReadCloser, error) {
	if mt == types.OCILayerZStd {
		d, err := zstd.NewReader(bytes.NewReader(blob))
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	}
	return gzip.NewReader(bytes.NewReader(blob))
}

// regFixture is everything built once for the whole run: the tars and
// their conversions.
type regFixture struct {
	layers [][]tarEnt
	tars   [][]byte
	blobs  map[lazyFormat][]lazyBlob
}

var (
	fixtureOnce sync.Once
	fixtureVal  *regFixture
)

func registryFixture(t testing.TB) *regFixture {
	t.Helper()
	fixtureOnce.Do(func() {
		f := &regFixture{layers: imageLayers(), blobs: map[lazyFormat][]lazyBlob{}}
		for _, ents := range f.layers {
			f.tars = append(f.tars, makeLayerTar(t, ents))
		}
		for _, lf := range lazyFormats {
			for _, tr := range f.tars {
				f.blobs[lf] = append(f.blobs[lf], buildLazyBlob(t, tr, lf))
			}
		}
		fixtureVal = f
	})
	if fixtureVal == nil {
		t.Fatal("building the registry fixture failed in an earlier test")
	}
	return fixtureVal
}

// imageOf assembles an OCI image from layers (base first), each with its
// own media type and annotations.
func imageOf(t testing.TB, layers []v1.Layer, annots []map[string]string) v1.Image {
	t.Helper()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.ConfigFile(img, &v1.ConfigFile{OS: "linux", Architecture: runtime.GOARCH,
		RootFS: v1.RootFS{Type: "layers"}, Config: v1.Config{Cmd: []string{"/bin/sh"}}})
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range layers {
		img, err = mutate.Append(img, mutate.Addendum{Layer: l, Annotations: annots[i]})
		if err != nil {
			t.Fatal(err)
		}
	}
	return img
}

func lazyImage(t testing.TB, blobs []lazyBlob) v1.Image {
	t.Helper()
	var layers []v1.Layer
	var annots []map[string]string
	for _, b := range blobs {
		layers = append(layers, blobLayer{b})
		annots = append(annots, b.annotations)
	}
	return imageOf(t, layers, annots)
}

// startRegistry runs an in-memory registry on 127.0.0.1, behind wrap if
// not nil, until the test ends, and returns its host:port.
func startRegistry(t testing.TB, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	var h http.Handler = registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// pushImage pushes img as ref and returns ref pinned to its digest too.
func pushImage(t testing.TB, ref string, img v1.Image) (byDigest string) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, remote.WithContext(t.Context())); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return r.Context().Name() + "@" + d.String()
}

// checkPulled pulls ref back and checks its manifest and blobs are what was
// built, so that a failure later is strata's and not the push's.
func checkPulled(t testing.TB, ref string, want []lazyBlob) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r, remote.WithContext(t.Context()))
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Layers) != len(want) {
		t.Fatalf("pulled %d layers, want %d", len(m.Layers), len(want))
	}
	for i, d := range m.Layers {
		if d.MediaType != want[i].mediaType || !mapsEqual(d.Annotations, want[i].annotations) {
			t.Fatalf("layer %d descriptor %+v, want media type %s annotations %v", i, d, want[i].mediaType, want[i].annotations)
		}
		l, err := img.LayerByDigest(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, want[i].blob) {
			t.Fatalf("layer %d blob differs after pull (%v)", i, err)
		}
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// layerForm is how deletions are written when a layer is extracted.
type layerForm int

const (
	formOCI     layerForm = iota // .wh.NAME files and .wh..wh..opq, as in the tar
	formOverlay                  // char 0/0 whiteouts and trusted.overlay.opaque=y
)

// epochZero is the time lazy gives a directory only implied by deeper
// names (and the layer root); the extraction gives such directories the
// same, so that the oracle's tree means the same image.
var epochZero = time.Unix(0, 0)

// extractLayers extracts each tar into its own directory under a fresh
// temporary directory and returns the directories, base first.
func extractLayers(t testing.TB, layers [][]tarEnt, form layerForm) []string {
	t.Helper()
	base := t.TempDir()
	var dirs []string
	for i, ents := range layers {
		d := filepath.Join(base, fmt.Sprintf("layer%d", i))
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := extractLayer(d, ents, form, dirs); err != nil {
			t.Fatalf("extract layer %d: %v", i, err)
		}
		dirs = append(dirs, d)
	}
	return dirs
}

// extractLayer extracts one layer's tar into root. lowers are the layers
// below, extracted already, base first.
func extractLayer(root string, ents []tarEnt, form layerForm, lowers []string) error {
	times := map[string]time.Time{root: epochZero}
	for _, e := range ents {
		rel := path.Clean(e.hdr.Name)
		p := filepath.Join(root, rel)
		if err := mkParents(root, filepath.Dir(p), times, lowers); err != nil {
			return err
		}
		if err := extractEnt(p, root, e, form); err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		if e.hdr.Typeflag != tar.TypeLink && !(form == formOverlay && strings.HasPrefix(path.Base(rel), ".wh.")) {
			mt := e.hdr.ModTime
			if mt.IsZero() {
				mt = buildEpoch
			}
			times[p] = mt
		}
	}
	// Deepest first, so that no later step bumps a directory's mtime.
	paths := slices.Collect(maps.Keys(times))
	slices.SortFunc(paths, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	for _, p := range paths {
		ts := []unix.Timespec{unix.NsecToTimespec(times[p].UnixNano()), unix.NsecToTimespec(times[p].UnixNano())}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("utimes %s: %w", p, err)
		}
	}
	return os.Chmod(root, 0o755)
}

// mkParents creates directories the tar implies but does not name. Such a
// directory gets the attributes of the same directory in the nearest layer
// below that has one, as extracting the layers onto one another (or
// containerd's overlay snapshotter, applying a layer over its parents)
// would leave it; without one, 0755, root, time 0.
func mkParents(root, dir string, times map[string]time.Time, lowers []string) error {
	if dir == root {
		return nil
	}
	if _, err := os.Lstat(dir); err == nil {
		return nil
	}
	if err := mkParents(root, filepath.Dir(dir), times, lowers); err != nil {
		return err
	}
	rel, err := filepath.Rel(root, dir)
	if err != nil {
		return err
	}
	for i := len(lowers) - 1; i >= 0; i-- {
		var st unix.Stat_t
		if unix.Lstat(filepath.Join(lowers[i], rel), &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		times[dir] = time.Unix(st.Mtim.Unix())
		if err := os.Mkdir(dir, 0o755); err != nil {
			return err
		}
		if err := os.Lchown(dir, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
		return os.Chmod(dir, os.FileMode(st.Mode&0o777)|unixModeBits(st.Mode))
	}
	times[dir] = epochZero
	return os.Mkdir(dir, 0o755)
}

// unixModeBits turns setuid, setgid and sticky bits into os.FileMode's.
func unixModeBits(m uint32) os.FileMode {
	var fm os.FileMode
	if m&unix.S_ISUID != 0 {
		fm |= os.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		fm |= os.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		fm |= os.ModeSticky
	}
	return fm
}

func extractEnt(p, root string, e tarEnt, form layerForm) error {
	h := e.hdr
	base := filepath.Base(p)
	if form == formOverlay && base == ".wh..wh..opq" {
		return unix.Setxattr(filepath.Dir(p), "trusted.overlay.opaque", []byte("y"), 0)
	}
	if form == formOverlay && strings.HasPrefix(base, ".wh.") {
		return unix.Mknod(filepath.Join(filepath.Dir(p), strings.TrimPrefix(base, ".wh.")), unix.S_IFCHR, 0)
	}
	var err error
	switch h.Typeflag {
	case tar.TypeDir:
		if err = os.Mkdir(p, 0o700); errors.Is(err, os.ErrExist) {
			err = nil
		}
	case tar.TypeReg:
		err = os.WriteFile(p, e.data, 0o600)
	case tar.TypeSymlink:
		return errors.Join(os.Symlink(h.Linkname, p), os.Lchown(p, h.Uid, h.Gid))
	case tar.TypeLink:
		return os.Link(filepath.Join(root, h.Linkname), p)
	case tar.TypeChar:
		err = unix.Mknod(p, unix.S_IFCHR, int(unix.Mkdev(uint32(h.Devmajor), uint32(h.Devminor))))
	case tar.TypeFifo:
		err = unix.Mknod(p, unix.S_IFIFO, 0)
	default:
		return fmt.Errorf("unexpected tar type %q", h.Typeflag)
	}
	if err != nil {
		return err
	}
	for k, v := range h.PAXRecords {
		if x, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
			if err := unix.Lsetxattr(p, x, []byte(v), 0); err != nil {
				return err
			}
		}
	}
	// chown before chmod: chown clears setuid/setgid.
	if err := os.Lchown(p, h.Uid, h.Gid); err != nil {
		return err
	}
	return unix.Chmod(p, uint32(h.Mode)&0o7777)
}

// mountRegistry runs `strata mount [--upper DIR] [extra...] REF MNT` on a
// fresh mountpoint, like mountStrata does for --layer mounts.
func mountRegistry(t testing.TB, ref, upper string, extra ...string) *strataMount {
	t.Helper()
	mnt := t.TempDir()
	args := []string{"mount"}
	if upper != "" {
		args = append(args, "--upper", upper)
	}
	if !slices.Contains(extra, "--cache") && !slices.Contains(extra, "--no-cache") {
		// Never the node's default cache: a test sees only what it fetched.
		args = append(args, "--cache", t.TempDir())
	}
	args = append(append(args, extra...), ref, mnt)
	m := &strataMount{Dir: mnt, stderr: &syncBuffer{}, done: make(chan error, 1)}
	m.cmd = exec.Command(strataBin, args...)
	m.cmd.Stderr, m.cmd.Stdout = m.stderr, m.stderr
	if err := m.cmd.Start(); err != nil {
		t.Fatalf("start strata: %v", err)
	}
	go func() { m.done <- m.cmd.Wait() }()
	deadline := time.Now().Add(20 * time.Second)
	for !isMounted(mnt) {
		select {
		case err := <-m.done:
			t.Fatalf("strata mount %s exited before mounting (%v): %s", ref, err, m.stderr.String())
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			m.cmd.Process.Kill()
			<-m.done
			unix.Unmount(mnt, unix.MNT_DETACH)
			t.Fatalf("strata did not mount %s within 20s: %s", ref, m.stderr.String())
		}
	}
	t.Cleanup(func() { m.unmount(t) })
	return m
}

// runRefused runs `strata mount [extra...] REF MNT`, which must fail, and
// returns its exit error and stderr; it fails the test (and undoes the
// mount) if strata mounted or hung.
func runRefused(t testing.TB, ref, mnt string, extra ...string) (error, string) {
	t.Helper()
	args := []string{"mount"}
	if !slices.Contains(extra, "--cache") {
		args = append(args, "--cache", t.TempDir())
	}
	cmd := exec.Command(strataBin, append(append(args, extra...), ref, mnt)...)
	var stderr syncBuffer
	cmd.Stderr, cmd.Stdout = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err, stderr.String()
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-done
		unix.Unmount(mnt, unix.MNT_DETACH)
		t.Fatalf("strata mount %s did not exit within 20s: it mounted or hung: %s", ref, stderr.String())
		return nil, ""
	}
}

// baseFile returns the content of a regular file of the base layer.
func (fx *regFixture) baseFile(name string) []byte {
	for _, e := range fx.layers[0] {
		if e.hdr.Name == name {
			return e.data
		}
	}
	panic("no " + name + " in the base layer")
}

// hash16 is a content hash as captureTree shows it.
func hash16(b []byte) string { return fmt.Sprintf("%x", sha256.Sum256(b))[:16] }
