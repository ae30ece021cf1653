package stream

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/stratafs/strata/layer"
)

func richEntries() []tarEntry {
	tool := reg("usr/bin/tool", randBytes(2, 1<<20+3))
	tool.h.Mode = 0o4755
	big := reg("usr/share/big", randBytes(1, 5<<20+17))
	big.h.Uid, big.h.Gid = 1000, 1001
	usr := dir("usr/", 0o700)
	usr.h.Uid = 5
	es := []tarEntry{
		dir("./", 0o755),
		dir("etc/", 0o750),
		reg("etc/passwd", []byte("root:x:0:0\n")),
		reg("etc/.wh.oldconf", nil),
		tool,
		symlink("usr/bin/link", "tool"),
		hardlink("usr/bin/tool2", "usr/bin/tool"),
		big,
		reg("empty", nil),
		hardlink("hl-empty", "empty"),
		reg(".wh.gone", nil),
		reg("var/lib/.wh..wh..opq", nil),
		reg("var/lib/data", []byte("d")),
		{h: tar.Header{Typeflag: tar.TypeFifo, Name: "run/fifo", Mode: 0o600}},
		{h: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3}},
		{h: tar.Header{Typeflag: tar.TypeChar, Name: "dev/wh0"}},
		usr,
		reg("etc/passwd", []byte("root:x:0:0:replaced\n")),
	}
	for i := range 40 {
		es = append(es, reg(fmt.Sprintf("many/f%02d", i), randBytes(uint64(i+10), i*100)))
	}
	return es
}

func openLayer(t *testing.T, blob Blob, mt string, opts ...Option) *Layer {
	t.Helper()
	l, err := Open(context.Background(), blob, mt, "", opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// TestDifferential: every listing, attribute and byte of the streamed
// layer equals what GNU tar extracts from the same tar.
func TestDifferential(t *testing.T) {
	syscall.Umask(0o022) // implied directories extracted by tar: 0755
	raw, _ := buildTar(t, richEntries())
	want, err := layer.OpenLocal(extract(t, raw))
	if err != nil {
		t.Fatal(err)
	}
	defer want.Close()
	for _, mt := range []string{mtGzip, mtZstd, mtTar} {
		for _, walk := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/walk=%v", mt, walk), func(t *testing.T) {
				opts := []Option{WithChunkSize(64 << 10), WithSpoolDir(t.TempDir())}
				if walk {
					opts = append(opts, WithWalkOrder())
				}
				l, err := Open(context.Background(), newBlob(compress(t, mt, raw)), mt, sha(raw), opts...)
				if err != nil {
					t.Fatal(err)
				}
				defer l.Close()
				compareTrees(t, want, l)
				if _, _, done := l.Progress(); !done {
					t.Error("not done after a full walk")
				}
			})
		}
	}
}

func compareTrees(t *testing.T, want *layer.Local, got *Layer) {
	ctx := context.Background()
	var walk func(p string)
	walk = func(p string) {
		wd, err := want.ReadDir(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		gd, err := got.ReadDir(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if wd.Opaque != gd.Opaque || len(wd.Entries) != len(gd.Entries) {
			t.Fatalf("%q: opaque %v, %d entries; want %v, %d\n got %v\nwant %v", p, gd.Opaque, len(gd.Entries), wd.Opaque, len(wd.Entries), names(gd), names(wd))
		}
		for i, we := range wd.Entries {
			ge, q := gd.Entries[i], joinPath(p, we.Name)
			compareEntry(t, q, we, ge)
			switch we.Type {
			case layer.TypeDir:
				walk(q)
			case layer.TypeReg:
				compareBytes(t, want, got, q)
				compareLinks(t, want, got, q, we, ge)
			}
		}
	}
	walk("")
	// The root last: Root answers after the first entry, with the tree so far.
	wr, err := want.Root(ctx)
	if err != nil {
		t.Fatal(err)
	}
	gr, err := got.Root(ctx)
	if err != nil {
		t.Fatal(err)
	}
	compareEntry(t, "/", wr, gr)
}

func names(d layer.Dir) []string {
	var ns []string
	for _, e := range d.Entries {
		ns = append(ns, e.Name+":"+e.Type.String())
	}
	return ns
}

func compareEntry(t *testing.T, p string, w, g layer.Entry) {
	t.Helper()
	ok := w.Name == g.Name && w.Type == g.Type && w.Perm == g.Perm && w.UID == g.UID && w.GID == g.GID &&
		w.Target == g.Target && w.Rdev == g.Rdev && (w.Type == layer.TypeWhiteout || w.Nlink == g.Nlink) &&
		(w.Type != layer.TypeReg || (w.Size == g.Size && w.Mtime == g.Mtime))
	if !ok {
		t.Errorf("%s:\n got %+v\nwant %+v", p, g, w)
	}
}

func compareBytes(t *testing.T, want *layer.Local, got *Layer, p string) {
	t.Helper()
	ctx := context.Background()
	wc, err := want.Open(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	defer wc.Close()
	gc, err := got.Open(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	defer gc.Close()
	wb, _ := io.ReadAll(io.NewSectionReader(wc, 0, 1<<40))
	gb, err := io.ReadAll(io.NewSectionReader(gc, 0, 1<<40))
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	if !bytes.Equal(wb, gb) {
		t.Errorf("%s: %d bytes differ from the %d extracted", p, len(gb), len(wb))
	}
}

func compareLinks(t *testing.T, want *layer.Local, got *Layer, p string, we, ge layer.Entry) {
	t.Helper()
	wl, err := want.Links(context.Background(), we.ID)
	if err != nil {
		t.Fatal(err)
	}
	gl, err := got.Links(context.Background(), ge.ID)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(wl)
	if len(wl) < 2 {
		wl = nil
	}
	if !slices.Equal(wl, gl) {
		t.Errorf("%s: links %v, want %v", p, gl, wl)
	}
}

// gatedLayer streams an uncompressed tar whose bytes stop, until opened,
// at the header of the entry named late.
func gatedLayer(t *testing.T, es []tarEntry, late string, opts ...Option) (*Layer, *memBlob, []byte) {
	t.Helper()
	raw, offs := buildTar(t, es)
	i := slices.IndexFunc(es, func(e tarEntry) bool { return e.h.Name == late })
	blob := newGatedBlob(raw, offs[i])
	l := openLayer(t, blob, mtTar, append([]Option{WithChunkSize(512)}, opts...)...)
	return l, blob, raw
}

func readAll(t *testing.T, c layer.Content) []byte {
	t.Helper()
	b, err := io.ReadAll(io.NewSectionReader(c, 0, 1<<40))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestOpenWaitsForFileNotYetReached(t *testing.T) {
	early, lateData := randBytes(3, 3000), randBytes(4, 70000)
	es := []tarEntry{reg("a/early", early), reg("b/x", []byte("x")), reg("z/late", lateData)}
	l, blob, _ := gatedLayer(t, es, "z/late")
	ctx := context.Background()

	c, err := l.Open(ctx, "a/early")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readAll(t, c), early) {
		t.Fatal("early file: wrong bytes")
	}
	type res struct {
		b   []byte
		err error
	}
	late, waiting := blocked(200*time.Millisecond, func() res {
		c, err := l.Open(ctx, "z/late")
		if err != nil {
			return res{err: err}
		}
		return res{b: readAll(t, c)}
	})
	dirs, dirWaiting := blocked(50*time.Millisecond, func() error { _, err := l.ReadDir(ctx, "a"); return err })
	if !waiting || !dirWaiting {
		t.Fatalf("open of a file not yet streamed (%v) or a listing (%v) did not wait", waiting, dirWaiting)
	}
	if _, _, done := l.Progress(); done {
		t.Fatal("done while gated")
	}
	blob.open()
	if r := recv(t, late); r.err != nil || !bytes.Equal(r.b, lateData) {
		t.Fatalf("late file after the gate: %v", r.err)
	}
	if err := recv(t, dirs); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Open(ctx, "nothere"); !errors.Is(err, layer.ErrNotExist) {
		t.Fatalf("missing file at the end: %v, want ErrNotExist", err)
	}
}

func TestWalkOrderAnswersPassedDirectory(t *testing.T) {
	es := []tarEntry{reg("a/x", []byte("x")), reg("a/y", nil), reg("b/z", nil), reg("c/late", nil)}
	l, blob, _ := gatedLayer(t, es, "c/late", WithWalkOrder())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d, err := l.ReadDir(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if got := names(d); !slices.Equal(got, []string{"x:file", "y:file"}) {
		t.Fatalf("listing of a: %v", got)
	}
	if _, err := l.Open(ctx, "a/nothere"); !errors.Is(err, layer.ErrNotExist) {
		t.Fatalf("missing file in a passed directory: %v", err)
	}
	if _, waiting := blocked(100*time.Millisecond, func() error { _, err := l.ReadDir(ctx, ""); return err }); !waiting {
		t.Fatal("root listed before the end")
	}
	blob.open()
	if _, err := l.Links(ctx, 1); err != nil {
		t.Fatal(err)
	}
}

func TestWalkOrderViolationFails(t *testing.T) {
	es := []tarEntry{reg("a/x", nil), reg("b/z", nil), reg("a/late", nil)}
	l, blob, _ := gatedLayer(t, es, "a/late", WithWalkOrder())
	ctx := context.Background()
	if _, err := l.ReadDir(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	blob.open()
	_, err := l.Links(ctx, 1)
	if !errors.Is(err, ErrOrder) || !errors.Is(err, ErrStream) {
		t.Fatalf("a tar re-entering a listed directory: %v, want ErrOrder", err)
	}
}

func TestCorruptStreamWakesWaiters(t *testing.T) {
	raw, _ := buildTar(t, []tarEntry{reg("a", randBytes(5, 1<<20)), reg("z", []byte("z"))})
	gz := compress(t, mtGzip, raw)
	bad := bytes.Clone(gz)
	for i := len(bad) / 2; i < len(bad)/2+64; i++ {
		bad[i] ^= 0x5a
	}
	for name, data := range map[string][]byte{"flipped": bad, "truncated": gz[:len(gz)*2/3]} {
		t.Run(name, func(t *testing.T) {
			blob := newGatedBlob(data, int64(len(data)/3))
			l := openLayer(t, blob, mtGzip, WithChunkSize(4096))
			// A flipped deflate block may decode to garbage that gzip's CRC
			// catches only at the member's end: wait for a path past it.
			waiter, waiting := blocked(100*time.Millisecond, func() error { _, err := l.Open(context.Background(), "nothere"); return err })
			if !waiting {
				t.Fatal("did not wait")
			}
			blob.open()
			if err := recv(t, waiter); !errors.Is(err, ErrStream) {
				t.Fatalf("waiter: %v, want ErrStream", err)
			}
			if _, err := l.ReadDir(context.Background(), ""); !errors.Is(err, ErrStream) {
				t.Fatalf("later ReadDir: %v, want ErrStream", err)
			}
		})
	}
}

func TestDigestMismatch(t *testing.T) {
	es := []tarEntry{reg("early", []byte("early bytes")), reg("late", []byte("late"))}
	raw, offs := buildTar(t, es)
	gz := compress(t, mtGzip, raw)
	ctx := context.Background()
	t.Run("diffID", func(t *testing.T) {
		blob := newGatedBlob(raw, offs[1])
		l, err := Open(ctx, blob, mtTar, sha([]byte("another tar")), WithChunkSize(512))
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		c, err := l.Open(ctx, "early")
		if err != nil {
			t.Fatal(err)
		}
		if b := readAll(t, c); string(b) != "early bytes" { // unverified yet: documented
			t.Fatalf("before the end: %q", b)
		}
		blob.open()
		if _, err := l.Links(ctx, 1); !errors.Is(err, ErrDigest) {
			t.Fatalf("at the end: %v, want ErrDigest", err)
		}
		if _, err := c.ReadAt(make([]byte, 1), 0); !errors.Is(err, ErrDigest) {
			t.Fatalf("read of an open file: %v, want ErrDigest", err)
		}
		for _, p := range []string{"early", "late"} {
			if _, err := l.Open(ctx, p); !errors.Is(err, ErrDigest) {
				t.Fatalf("open %s: %v, want ErrDigest", p, err)
			}
		}
		if _, err := l.Root(ctx); !errors.Is(err, ErrDigest) {
			t.Fatalf("root: %v", err)
		}
	})
	t.Run("blob", func(t *testing.T) {
		l, err := Open(ctx, newBlob(gz), mtGzip, sha(raw), WithBlobDigest(sha(raw)))
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		if _, err := l.ReadDir(ctx, ""); !errors.Is(err, ErrDigest) {
			t.Fatalf("wrong blob digest: %v, want ErrDigest", err)
		}
	})
	t.Run("both right", func(t *testing.T) {
		l, err := Open(ctx, newBlob(gz), mtGzip, sha(raw), WithBlobDigest(sha(gz)))
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		if _, err := l.ReadDir(ctx, ""); err != nil {
			t.Fatal(err)
		}
		if read, total, done := l.Progress(); !done || read != total || total != int64(len(gz)) {
			t.Fatalf("progress %d/%d done=%v", read, total, done)
		}
	})
}

func TestCloseWhileStreaming(t *testing.T) {
	spool := t.TempDir()
	raw, offs := buildTar(t, []tarEntry{reg("a", []byte("a")), reg("b", randBytes(6, 1<<20))})
	blob := newGatedBlob(raw, offs[1]+4096)
	l, err := Open(context.Background(), blob, mtTar, "", WithSpoolDir(spool), WithChunkSize(512))
	if err != nil {
		t.Fatal(err)
	}
	c, err := l.Open(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	waiter, waiting := blocked(50*time.Millisecond, func() error { _, err := l.Open(context.Background(), "b"); return err })
	if !waiting {
		t.Fatal("did not wait")
	}
	start := time.Now()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Close took %v", d)
	}
	if err := recv(t, waiter); !errors.Is(err, ErrClosed) {
		t.Fatalf("waiter after Close: %v, want ErrClosed", err)
	}
	if _, err := c.ReadAt(make([]byte, 1), 0); err == nil {
		t.Fatal("read after Close succeeded")
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if left, _ := os.ReadDir(spool); len(left) != 0 {
		t.Fatalf("spool directory not empty: %v", left)
	}
}

func TestWaitHonoursContext(t *testing.T) {
	raw, offs := buildTar(t, []tarEntry{reg("a", nil), reg("b", []byte("b"))})
	blob := newGatedBlob(raw, offs[1])
	l := openLayer(t, blob, mtTar, WithChunkSize(512))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := l.Open(ctx, "b"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("%v, want DeadlineExceeded", err)
	}
	blob.open()
	if _, err := l.Open(context.Background(), "b"); err != nil {
		t.Fatalf("the layer after a waiter gave up: %v", err)
	}
}

func TestBadNamesRefused(t *testing.T) {
	for _, es := range [][]tarEntry{
		{reg("../x", nil)},
		{reg("/etc/passwd", nil)},
		{reg("a/../../b", nil)},
		{reg("a//b", nil)},
		{reg("a", nil), hardlink("b", "../a")},
		{dir("d/", 0o755), hardlink("b", "d")},
		{reg("f", nil), reg("f/x", nil)},
		{symlink("s", "")},
	} {
		t.Run(es[len(es)-1].h.Name, func(t *testing.T) {
			raw, _ := buildTar(t, append([]tarEntry{reg("first", nil)}, es...))
			l := openLayer(t, newBlob(raw), mtTar)
			if _, err := l.ReadDir(context.Background(), ""); !errors.Is(err, ErrStream) {
				t.Fatalf("%v, want ErrStream", err)
			}
			if _, err := l.Open(context.Background(), "first"); !errors.Is(err, ErrStream) {
				t.Fatalf("open after the failure: %v, want ErrStream", err)
			}
		})
	}
}

func TestMediaTypes(t *testing.T) {
	raw, _ := buildTar(t, []tarEntry{reg("f", []byte("f"))})
	if _, err := Open(context.Background(), newBlob(raw), "application/vnd.oci.image.layer.v1.tar+bzip2", ""); !errors.Is(err, ErrMediaType) {
		t.Fatalf("%v, want ErrMediaType", err)
	}
	for mt, data := range map[string][]byte{
		"application/vnd.docker.image.rootfs.diff.tar.gzip": compress(t, mtGzip, raw),
		"application/vnd.docker.image.rootfs.diff.tar":      raw,
		mtZstd: compress(t, mtZstd, raw),
	} {
		l := openLayer(t, newBlob(data), mt)
		c, err := l.Open(context.Background(), "f")
		if err != nil {
			t.Fatalf("%s: %v", mt, err)
		}
		if string(readAll(t, c)) != "f" {
			t.Fatalf("%s: wrong bytes", mt)
		}
	}
}

func TestXattrsAndEmptyLayer(t *testing.T) {
	d := dir("o/", 0o755)
	d.h.PAXRecords = map[string]string{"SCHILY.xattr.trusted.overlay.opaque": "y"}
	f := reg("o/f", []byte("f"))
	f.h.PAXRecords = map[string]string{"SCHILY.xattr.user.k": "v"}
	raw, _ := buildTar(t, []tarEntry{d, f})
	l := openLayer(t, newBlob(compress(t, mtGzip, raw)), mtGzip)
	od, err := l.ReadDir(context.Background(), "o")
	if err != nil {
		t.Fatal(err)
	}
	if !od.Opaque || len(od.Entries) != 1 || string(od.Entries[0].Xattrs["user.k"]) != "v" {
		t.Fatalf("got %+v", od)
	}

	empty, _ := buildTar(t, nil)
	l = openLayer(t, newBlob(compress(t, mtZstd, empty)), mtZstd)
	root, err := l.ReadDir(context.Background(), "")
	if err != nil || len(root.Entries) != 0 {
		t.Fatalf("empty layer: %+v, %v", root, err)
	}
	if e, err := l.Root(context.Background()); err != nil || e.Type != layer.TypeDir || e.Perm != 0o755 {
		t.Fatalf("root of an empty layer: %+v, %v", e, err)
	}
}

// TestLowerLink: a hard link to a path the layer does not hold names a file
// of a layer below, listed as such for the union to resolve.
func TestLowerLink(t *testing.T) {
	raw, _ := buildTar(t, []tarEntry{reg("first", nil), hardlink("alias", "usr/lib/below"), hardlink("alias2", "alias")})
	l := openLayer(t, newBlob(raw), mtTar)
	d, err := l.ReadDir(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"alias", "alias2"} {
		e, ok := d.Find(name)
		if !ok || e.Type != layer.TypeLowerLink || e.Target != "usr/lib/below" {
			t.Errorf("%s = %+v, want a lower link to usr/lib/below", name, e)
		}
	}
}
