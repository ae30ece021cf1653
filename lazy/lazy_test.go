package lazy

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"path"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	"github.com/stratafs/strata/layer"
	"golang.org/x/sys/unix"
)

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// fixture is a tar with every kind of entry the layer model knows.
func fixture(r *rand.Rand) []tarEntry {
	small := reg("dir/small", []byte("hello small file\n"))
	small.hdr.Uid, small.hdr.Gid = 1000, 1001
	small.hdr.PAXRecords = map[string]string{"SCHILY.xattr.user.foo": "bar"}
	suid := reg("dir/suid", []byte("#!/bin/sh\n"))
	suid.hdr.Mode = 0o4755
	d := dir("dir/")
	d.hdr.Mode, d.hdr.Uid = 0o750, 1000
	null := tarEntry{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3}}
	fifo := tarEntry{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "dev/fifo", Mode: 0o600}}
	return []tarEntry{
		d, reg("dir/empty", nil), small,
		reg("dir/big", randBytes(r, 10_500)), reg("dir/exact", randBytes(r, 3000)), suid,
		symlink("dir/link", "../etc/passwd"),
		hardlink("dir/hard", "dir/small"), hardlink("dir/hard2", "dir/hard"),
		reg("dir/.wh.gone", nil), reg("dir/kept", []byte("x")), reg("dir/.wh.kept", nil),
		dir("opq/"), reg("opq/.wh..wh..opq", nil), reg("opq/in", []byte("in")),
		reg("implied/deep/file", []byte("deep")),
		dir("dev/"), null, fifo,
	}
}

type testFormat struct {
	name string
	opts buildOpts
}

var testFormats = []testFormat{
	{"estargz", buildOpts{chunkSize: 1000, level: 1}},
	{"zstdchunked", buildOpts{zstd: true, chunkSize: 1000}},
}

func openBuilt(t testing.TB, b built, opts ...Option) (*Layer, *memBlob) {
	t.Helper()
	mb := &memBlob{data: b.blob}
	l, err := Open(context.Background(), mb, b.annot, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, mb
}

func TestFixtureTree(t *testing.T) {
	tarData := makeTar(t, fixture(rand.New(rand.NewPCG(1, 2))))
	for _, f := range testFormats {
		t.Run(f.name, func(t *testing.T) {
			l, _ := openBuilt(t, buildBlob(t, tarData, f.opts))
			checkFixture(t, l)
		})
	}
}

func checkFixture(t *testing.T, l *Layer) {
	ctx := context.Background()
	want := map[string]string{
		"":             "dev:dir dir:dir implied:dir opq:dir",
		"dir":          "big:file empty:file exact:file gone:whiteout hard:file hard2:file kept:file link:symlink small:file suid:file",
		"opq":          "in:file",
		"implied":      "deep:dir",
		"implied/deep": "file:file",
		"dev":          "fifo:fifo null:char",
	}
	dirs := map[string]layer.Dir{}
	for p, w := range want {
		d, err := l.ReadDir(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range d.Entries {
			got = append(got, e.Name+":"+e.Type.String())
		}
		if strings.Join(got, " ") != w {
			t.Errorf("ReadDir(%q) = %s\nwant %s", p, strings.Join(got, " "), w)
		}
		if d.Opaque != (p == "opq") {
			t.Errorf("ReadDir(%q).Opaque = %v", p, d.Opaque)
		}
		dirs[p] = d
	}
	find := func(dir, name string) layer.Entry {
		d := dirs[dir]
		e, ok := d.Find(name)
		if !ok {
			t.Fatalf("%s/%s missing", dir, name)
		}
		return *e
	}
	small, hard, hard2 := find("dir", "small"), find("dir", "hard"), find("dir", "hard2")
	if small.UID != 1000 || small.GID != 1001 || string(small.Xattrs["user.foo"]) != "bar" || small.Size != 17 {
		t.Errorf("small = %+v", small)
	}
	if small.ID != hard.ID || small.ID != hard2.ID || small.Nlink != 3 || hard2.Nlink != 3 || hard.Size != 17 {
		t.Errorf("hard links: small %+v hard %+v hard2 %+v", small, hard, hard2)
	}
	if small.Mtime != testTime.UnixNano() || small.Ctime != small.Mtime {
		t.Errorf("small mtime %d, want %d", small.Mtime, testTime.UnixNano())
	}
	if e := find("dir", "link"); e.Target != "../etc/passwd" {
		t.Errorf("link = %+v", e)
	}
	if e := find("dir", "suid"); e.Perm != 0o4755 {
		t.Errorf("suid perm %o", e.Perm)
	}
	if e := find("", "dir"); e.Perm != 0o750 || e.UID != 1000 || e.Nlink != 2 {
		t.Errorf("dir = %+v", e)
	}
	if e := find("", "implied"); e.Perm != 0o755 || e.UID != 0 || e.Nlink != 3 {
		t.Errorf("implied = %+v", e)
	}
	if e := find("dev", "null"); e.Rdev != unix.Mkdev(1, 3) {
		t.Errorf("null rdev %#x", e.Rdev)
	}
	root, _ := l.Root(ctx)
	if root.Type != layer.TypeDir || root.Nlink != 6 {
		t.Errorf("root = %+v", root)
	}
	links, _ := l.Links(ctx, small.ID)
	if slices.Sort(links); strings.Join(links, ",") != "dir/hard,dir/hard2,dir/small" {
		t.Errorf("Links = %v", links)
	}
	if ids := entryIDs(t, l); len(ids) != len(slices.Compact(slices.Sorted(slices.Values(ids))))+2 {
		t.Errorf("IDs not unique (2 hard links expected): %v", ids)
	}
}

// entryIDs lists the ID of every visible non-whiteout entry.
func entryIDs(t *testing.T, l *Layer) []uint64 {
	var ids []uint64
	walk(t, l, func(p string, e layer.Entry) { ids = append(ids, e.ID) })
	return ids
}

func walk(t testing.TB, l *Layer, fn func(p string, e layer.Entry)) {
	var rec func(dir string)
	rec = func(dir string) {
		d, err := l.ReadDir(context.Background(), dir)
		if err != nil {
			t.Fatal(err)
		}
		for i, e := range d.Entries {
			if i > 0 && d.Entries[i-1].Name >= e.Name {
				t.Fatalf("ReadDir(%q) not sorted or not unique at %q", dir, e.Name)
			}
			if !layer.ValidName(e.Name) {
				t.Fatalf("ReadDir(%q): bad name %q", dir, e.Name)
			}
			if e.Type == layer.TypeWhiteout {
				continue
			}
			p := joinPath(dir, e.Name)
			fn(p, e)
			if e.Type == layer.TypeDir {
				rec(p)
			}
		}
	}
	rec("")
}

func TestPathErrors(t *testing.T) {
	tarData := makeTar(t, fixture(rand.New(rand.NewPCG(1, 2))))
	l, _ := openBuilt(t, buildBlob(t, tarData, testFormats[0].opts))
	ctx := context.Background()
	for p, want := range map[string]error{
		"missing": layer.ErrNotExist, "dir/missing": layer.ErrNotExist,
		"dir/small/x": layer.ErrNotDir, "dir/small": layer.ErrNotDir,
		"/dir": layer.ErrInvalidPath, "dir/": layer.ErrInvalidPath, "dir/../dir": layer.ErrInvalidPath,
	} {
		if _, err := l.ReadDir(ctx, p); !errors.Is(err, want) {
			t.Errorf("ReadDir(%q) = %v, want %v", p, err, want)
		}
	}
	for _, p := range []string{"dir", "dir/link", "dev/null", "missing"} {
		if _, err := l.Open(ctx, p); err == nil {
			t.Errorf("Open(%q) succeeded", p)
		}
	}
}

// randomTar is a tree of files of awkward sizes around the chunk size.
func randomTar(r *rand.Rand, n, chunk int) []tarEntry {
	sizes := []int{0, 1, chunk - 1, chunk, chunk + 1, 3 * chunk, 7*chunk + 13}
	var ents []tarEntry
	for i := range n {
		size := sizes[i%len(sizes)]
		if i%5 == 4 {
			size = r.IntN(20 * chunk)
		}
		name := fmt.Sprintf("d%d/e%d/f%d", r.IntN(4), r.IntN(3), i)
		ents = append(ents, reg(name, randBytes(r, size)))
	}
	return ents
}

// TestDifferential reads every file through the layer, whole and in random
// pieces, and compares it with the tar it was built from.
func TestDifferential(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	ents := append(fixture(r), randomTar(r, 60, 1000)...)
	tarData := makeTar(t, ents)
	want := tarFiles(t, tarData)
	for _, f := range testFormats {
		t.Run(f.name, func(t *testing.T) {
			l, _ := openBuilt(t, buildBlob(t, tarData, f.opts), WithCacheSize(8000))
			seen := map[string]bool{}
			walk(t, l, func(p string, e layer.Entry) {
				if e.Type == layer.TypeReg {
					seen[p] = true
					checkContent(t, l, p, want[p], r)
				}
			})
			for p := range want {
				if !seen[p] && !strings.Contains(p, ".wh.") {
					t.Errorf("%s in the tar but not in the layer", p)
				}
			}
		})
	}
}

// tarFiles returns the bytes of every regular file and hard link in a tar.
func tarFiles(t *testing.T, data []byte) map[string][]byte {
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		switch h.Typeflag {
		case tar.TypeReg:
			files[path.Clean(h.Name)], _ = io.ReadAll(tr)
		case tar.TypeLink:
			files[path.Clean(h.Name)] = files[path.Clean(h.Linkname)]
		}
	}
}

func checkContent(t *testing.T, l *Layer, p string, want []byte, r *rand.Rand) {
	c, err := l.Open(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := make([]byte, len(want)+10)
	n, err := c.ReadAt(got, 0)
	if n != len(want) || err != io.EOF || !bytes.Equal(got[:n], want) {
		t.Fatalf("%s: read %d bytes (%v), want %d bytes", p, n, err, len(want))
	}
	for range 8 {
		off := r.IntN(len(want) + 2)
		buf := make([]byte, r.IntN(2500)+1)
		n, err := c.ReadAt(buf, int64(off))
		end := min(off+len(buf), len(want))
		if off > len(want) {
			end = off
		}
		if n != end-off || !bytes.Equal(buf[:n], want[off:end]) || (n < len(buf)) != (err == io.EOF) {
			t.Fatalf("%s: ReadAt(%d, %d) = %d, %v", p, len(buf), off, n, err)
		}
	}
}

func TestTOCDigest(t *testing.T) {
	tarData := makeTar(t, fixture(rand.New(rand.NewPCG(1, 2))))
	for _, f := range testFormats {
		t.Run(f.name, func(t *testing.T) {
			b := buildBlob(t, tarData, f.opts)
			ctx := context.Background()
			// zstd:chunked is named by either digest; eStargz by the JSON's.
			for _, d := range []digest.Digest{b.tocDigest, b.annot} {
				if _, err := Open(ctx, &memBlob{data: b.blob}, d); err != nil {
					t.Errorf("Open with %s: %v", d, err)
				}
			}
			wrong := digest.FromString("not the TOC")
			_, err := Open(ctx, &memBlob{data: b.blob}, wrong)
			if !errors.Is(err, ErrTOCDigest) {
				t.Errorf("wrong digest: %v, want ErrTOCDigest", err)
			}
			if _, err := Open(ctx, &memBlob{data: b.blob}, "sha256:zz"); err == nil {
				t.Error("malformed digest accepted")
			}
		})
	}
}

func TestNotLazy(t *testing.T) {
	ctx := context.Background()
	for _, data := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte{0}, 4096), makeTar(t, []tarEntry{reg("a", []byte("a"))})} {
		if _, err := Open(ctx, &memBlob{data: data}, digest.FromString("x")); !errors.Is(err, ErrFormat) {
			t.Errorf("%d-byte blob: %v, want ErrFormat", len(data), err)
		}
	}
}

// TestCorruptChunk flips one byte in each chunk's compressed range in turn:
// reading the file must fail, and never return the changed bytes.
func TestCorruptChunk(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	big := randBytes(r, 10_500)
	tarData := makeTar(t, []tarEntry{reg("big", big), reg("other", []byte("other"))})
	fmts := append(testFormats, testFormat{"estargz-stored", buildOpts{chunkSize: 1000, level: 0}})
	for _, f := range fmts {
		t.Run(f.name, func(t *testing.T) {
			b := buildBlob(t, tarData, f.opts)
			l, _ := openBuilt(t, b)
			for i, ch := range l.idx.nodes["big"].file.chunks {
				bad := bytes.Clone(b.blob)
				bad[ch.cOff+20] ^= 0x40 // inside the chunk's own data, past the stream header
				checkCorrupt(t, bad, b.annot, big, f.opts.level == 0, i)
			}
		})
	}
}

func checkCorrupt(t *testing.T, blob []byte, d digest.Digest, want []byte, wantDigestErr bool, i int) {
	l, err := Open(context.Background(), &memBlob{data: blob}, d)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, _ := l.Open(context.Background(), "big")
	got := make([]byte, len(want))
	n, err := c.ReadAt(got, 0)
	if err == nil || err == io.EOF {
		t.Fatalf("chunk %d corrupted: read succeeded", i)
	}
	if wantDigestErr && !errors.Is(err, ErrChunkDigest) {
		t.Errorf("chunk %d: %v, want ErrChunkDigest", i, err)
	}
	if !bytes.Equal(got[:n], want[:n]) || bytes.ContainsFunc(got[n:], func(r rune) bool { return r != 0 }) {
		t.Errorf("chunk %d: wrong bytes returned with %v", i, err)
	}
	oc, _ := l.Open(context.Background(), "other")
	buf := make([]byte, 5)
	if _, err := oc.ReadAt(buf, 0); err != nil || string(buf) != "other" {
		t.Errorf("other file after corruption: %q, %v", buf, err)
	}
}

// TestCacheSequential reads a multi-chunk file 100 bytes at a time: each
// chunk is fetched once, and a fetch takes as many chunks as its window
// holds. The file's 11 chunks take 1,016 to 1,033 compressed bytes each
// (the last 623 to 679), so a 3,100-byte window holds 3 of them: 4
// requests, and "other" stays out (its chunk is bigger than the window's
// share of the files after big's); the default window takes all of big and
// "other" in one. Read-ahead changes who fetches a window, not where
// windows start, so the requests are exact. The last window may be a
// read-ahead grown to twice the window (when its slot frees only once the
// reader has read two windows' worth), whose share takes "other" too:
// fetches are then one more.
func TestCacheSequential(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	big := randBytes(r, 10_500)
	tarData := makeTar(t, []tarEntry{reg("big", big), reg("other", []byte("other"))})
	for _, f := range testFormats {
		b := buildBlob(t, tarData, f.opts)
		for _, tc := range []struct {
			name              string
			opts              []Option
			requests, fetches int64
			grown             bool // the last window may be a grown read-ahead
		}{
			{"off", []Option{WithFetchWindow(0)}, 11, 11, false},
			{"3100", []Option{WithFetchWindow(3100)}, 4, 11, true},
			{"3100-no-read-ahead", []Option{WithFetchWindow(3100), WithReadAhead(0)}, 4, 11, false},
			{"default", nil, 1, 12, false},
		} {
			t.Run(f.name+"/"+tc.name, func(t *testing.T) {
				l, mb := openBuilt(t, b, tc.opts...)
				mb.reads.Store(0)
				if got := readSequential(t, l, "big", 100); !bytes.Equal(got, big) {
					t.Fatal("sequential read differs")
				}
				l.Close() // waits for windows still being decoded
				s := l.Stats()
				if n := mb.reads.Load(); n != tc.requests || s.RangeRequests != n {
					t.Errorf("%d blob reads (%d counted) for 11 chunks, want %d", n, s.RangeRequests, tc.requests)
				}
				if tc.grown && s.ChunkFetches == tc.fetches+1 {
					s.ChunkFetches-- // "other", taken by a grown read-ahead
				}
				if s.ChunkFetches != tc.fetches || s.FetchErrors != 0 {
					t.Errorf("%d chunks fetched, %d errors; want %d, 0", s.ChunkFetches, s.FetchErrors, tc.fetches)
				}
			})
		}
	}
}

// readSequential reads the file at p in pieces of n bytes.
func readSequential(t testing.TB, l *Layer, p string, n int) []byte {
	return readPaced(t, l, p, n, 0)
}

// readPaced is readSequential with a pause after each read: a reader slower
// than the layer's background fetches.
func readPaced(t testing.TB, l *Layer, p string, n int, pause time.Duration) []byte {
	c, err := l.Open(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var got []byte
	buf := make([]byte, n)
	for off := int64(0); ; off += int64(n) {
		k, err := c.ReadAt(buf, off)
		got = append(got, buf[:k]...)
		if err == io.EOF {
			return got
		}
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(pause)
	}
}

// TestConcurrentReads reads every file from many goroutines at once, with a
// cache too small to hold them, for the race detector and singleflight.
func TestConcurrentReads(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	tarData := makeTar(t, randomTar(r, 40, 1000))
	want := tarFiles(t, tarData)
	for _, f := range testFormats {
		t.Run(f.name, func(t *testing.T) {
			l, _ := openBuilt(t, buildBlob(t, tarData, f.opts), WithCacheSize(3000))
			var wg sync.WaitGroup
			for g := range 4 {
				wg.Go(func() {
					for p, data := range want {
						c, err := l.Open(context.Background(), p)
						if err != nil {
							t.Error(err)
							return
						}
						got := make([]byte, len(data))
						if n, err := c.ReadAt(got, 0); n != len(data) || (err != nil && err != io.EOF) || !bytes.Equal(got, data) {
							t.Errorf("goroutine %d: %s: %d, %v", g, p, n, err)
						}
					}
				})
			}
			wg.Wait()
		})
	}
}

func TestReadAtContextAndClose(t *testing.T) {
	tarData := makeTar(t, []tarEntry{reg("f", []byte("data"))})
	l, _ := openBuilt(t, buildBlob(t, tarData, testFormats[0].opts))
	c, _ := l.Open(context.Background(), "f")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.(*Content).ReadAtContext(ctx, make([]byte, 4), 0); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled read: %v", err)
	}
	c.Close()
	if _, err := c.ReadAt(make([]byte, 4), 0); err == nil {
		t.Error("read after Close succeeded")
	}
}

// TestFetchBounds checks what Open and a full read cost: two reads to open
// (footer, TOC), and no read past the chunk data into the TOC.
func TestFetchBounds(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	tarData := makeTar(t, randomTar(r, 30, 1000))
	want := tarFiles(t, tarData)
	for _, f := range testFormats {
		t.Run(f.name, func(t *testing.T) {
			b := buildBlob(t, tarData, f.opts)
			payload, _ := splitBlob(t, b.blob, f.opts.zstd)
			store := NewMemoryStore(1 << 20)
			l, mb := openBuilt(t, b, WithChunkStore(store))
			if n := mb.reads.Load(); n != 2 {
				t.Errorf("Open made %d reads, want 2", n)
			}
			mb.bytes.Store(0)
			for p, data := range want {
				checkContent(t, l, p, data, r)
			}
			if n := mb.bytes.Load(); n > int64(len(payload)) {
				t.Errorf("read %d bytes of a %d-byte payload", n, len(payload))
			}
			// A second layer sharing the store fetches nothing, not even
			// its TOC.
			l2, mb2 := openBuilt(t, b, WithChunkStore(store))
			for p, data := range want {
				checkContent(t, l2, p, data, r)
			}
			if n := mb2.reads.Load(); n != 0 {
				t.Errorf("second layer made %d reads, want 0", n)
			}
		})
	}
}

// TestLowerLink: a hard link whose target is not in the layer names a file
// of a layer below; the layer lists it as such (a chain of links included)
// for the union to resolve, instead of refusing the TOC.
func TestLowerLink(t *testing.T) {
	for _, tf := range testFormats {
		t.Run(tf.name, func(t *testing.T) {
			tarData := makeTar(t, []tarEntry{dir("bin/"), hardlink("bin/alias", "usr/lib/below"), hardlink("bin/alias2", "bin/alias")})
			l, _ := openBuilt(t, buildBlob(t, tarData, tf.opts))
			d, err := l.ReadDir(context.Background(), "bin")
			if err != nil {
				t.Fatal(err)
			}
			for _, name := range []string{"alias", "alias2"} {
				e, ok := d.Find(name)
				if !ok || e.Type != layer.TypeLowerLink || e.Target != "usr/lib/below" {
					t.Errorf("bin/%s = %+v, want a lower link to usr/lib/below", name, e)
				}
			}
		})
	}
}

// TestStoredTOC: a layer opened with only its TOC in the store (as after a
// restart) reads nothing to open, and then serves the same tree and bytes,
// the layer's last chunk included (fetched with the TOC behind it).
func TestStoredTOC(t *testing.T) {
	tarData := makeTar(t, fixture(rand.New(rand.NewPCG(1, 2))))
	want := tarFiles(t, tarData)
	for _, f := range testFormats {
		t.Run(f.name, func(t *testing.T) {
			b := buildBlob(t, tarData, f.opts)
			first := NewMemoryStore(1 << 20)
			l1, _ := openBuilt(t, b, WithChunkStore(first))
			toc, ok := first.Get(b.annot)
			if !ok {
				t.Fatal("Open kept no TOC in the store")
			}
			only := NewMemoryStore(1 << 20)
			only.Put(b.annot, toc)
			l2, mb := openBuilt(t, b, WithChunkStore(only))
			if n := mb.reads.Load(); n != 0 || l2.Format() != l1.Format() {
				t.Fatalf("Open from the stored TOC: %d reads, format %s; want 0, %s", n, l2.Format(), l1.Format())
			}
			checkFixture(t, l2)
			for p, data := range want {
				if got := readSequential(t, l2, p, 700); !bytes.Equal(got, data) {
					t.Errorf("%s: wrong bytes", p)
				}
			}
		})
	}
}

// TestHasXattrs: a layer tells whether any entry carries an extended
// attribute; overlay bookkeeping (an opaque directory's marker) does not
// count, since the merged tree never shows it.
func TestHasXattrs(t *testing.T) {
	tagged := reg("etc/tagged", []byte("x"))
	tagged.hdr.PAXRecords = map[string]string{"SCHILY.xattr.user.k": "v"}
	opaque := dir("var/")
	opaque.hdr.PAXRecords = map[string]string{"SCHILY.xattr.trusted.overlay.opaque": "y"}
	for _, tc := range []struct {
		name string
		ents []tarEntry
		want bool
	}{
		{"none", []tarEntry{reg("etc/plain", []byte("x"))}, false},
		{"opaque marker only", []tarEntry{opaque, reg("var/x", []byte("x"))}, false},
		{"one file", []tarEntry{reg("etc/plain", []byte("x")), tagged}, true},
	} {
		for _, f := range testFormats {
			t.Run(tc.name+"/"+f.name, func(t *testing.T) {
				l, _ := openBuilt(t, buildBlob(t, makeTar(t, tc.ents), f.opts))
				if got := l.HasXattrs(); got != tc.want {
					t.Errorf("HasXattrs = %v, want %v", got, tc.want)
				}
			})
		}
	}
}
