package stream

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
)

const (
	mtGzip = "application/vnd.oci.image.layer.v1.tar+gzip"
	mtZstd = "application/vnd.oci.image.layer.v1.tar+zstd"
	mtTar  = "application/vnd.oci.image.layer.v1.tar"
)

// tarEntry is one header of a test tar; data is a regular file's bytes.
type tarEntry struct {
	h    tar.Header
	data []byte
}

func reg(name string, data []byte) tarEntry {
	return tarEntry{h: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: time.Unix(1700000000, 0)}, data: data}
}

func dir(name string, mode int64) tarEntry {
	return tarEntry{h: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, ModTime: time.Unix(1700000000, 0)}}
}

func symlink(name, target string) tarEntry {
	return tarEntry{h: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: time.Unix(1700000000, 0)}}
}

func hardlink(name, target string) tarEntry {
	return tarEntry{h: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: 0o644, ModTime: time.Unix(1700000000, 0)}}
}

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// buildTar writes entries and returns the tar and, for each entry, the
// offset of its header in it.
func buildTar(t testing.TB, entries []tarEntry) ([]byte, []int64) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	offs := make([]int64, len(entries))
	for i, e := range entries {
		if err := tw.Flush(); err != nil {
			t.Fatal(err)
		}
		offs[i] = int64(buf.Len())
		h := e.h
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
	return buf.Bytes(), offs
}

func compress(t testing.TB, mediaType string, raw []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w io.WriteCloser
	switch mediaType {
	case mtGzip:
		w = gzip.NewWriter(&buf)
	case mtZstd:
		z, err := zstd.NewWriter(&buf, zstd.WithEncoderConcurrency(1))
		if err != nil {
			t.Fatal(err)
		}
		w = z
	default:
		return raw
	}
	if _, err := w.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// memBlob is an in-memory Blob. Reads reaching gateAt or beyond block
// until open is called (or their ctx ends); calls counts ReadAt calls.
type memBlob struct {
	data   []byte
	gateAt int64
	gate   chan struct{}
	once   sync.Once
	mu     sync.Mutex
	calls  int
}

func newBlob(data []byte) *memBlob {
	return &memBlob{data: data, gateAt: -1}
}

func newGatedBlob(data []byte, at int64) *memBlob {
	return &memBlob{data: data, gateAt: at, gate: make(chan struct{})}
}

func (b *memBlob) open() { b.once.Do(func() { close(b.gate) }) }

func (b *memBlob) Size() int64 { return int64(len(b.data)) }

func (b *memBlob) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	b.mu.Lock()
	b.calls++
	b.mu.Unlock()
	if b.gateAt >= 0 && off+int64(len(p)) > b.gateAt {
		select {
		case <-b.gate:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	if off >= int64(len(b.data)) {
		return 0, io.EOF
	}
	n := copy(p, b.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func sha(b []byte) digest.Digest { return digest.FromBytes(b) }

// extract unpacks a tar with GNU tar as root: the oracle for the tree.
func extract(t *testing.T, raw []byte) string {
	t.Helper()
	dst := t.TempDir()
	cmd := exec.Command("tar", "-x", "--same-owner", "--same-permissions", "-C", dst)
	cmd.Stdin = bytes.NewReader(raw)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tar -x: %v\n%s", err, out)
	}
	return dst
}

// blocked runs f and reports whether it is still running after d.
func blocked[T any](d time.Duration, f func() T) (<-chan T, bool) {
	ch := make(chan T, 1)
	go func() { ch <- f() }()
	select {
	case v := <-ch:
		ch2 := make(chan T, 1)
		ch2 <- v
		return ch2, false
	case <-time.After(d):
		return ch, true
	}
}

func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("still waiting after 10s")
	}
	panic("unreachable")
}
