package lazy

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	"github.com/stratafs/strata/layer"
)

// fuzzTar is small, with files of several chunks, so that fuzzed TOCs point
// into real chunk data.
func fuzzTar(t testing.TB) []byte {
	return makeTar(t, []tarEntry{
		dir("d/"), reg("d/a", []byte("aaaa")), reg("d/b", make([]byte, 250)),
		hardlink("d/h", "d/a"), symlink("d/s", "a"), reg("d/.wh.x", nil),
		reg("e/f", []byte("deeper file")),
	})
}

// FuzzOpen feeds Open TOCs (kinds 0 and 1: the TOC JSON of an eStargz or
// zstd:chunked blob whose digest matches) and whole blobs (kind 2). Open may
// refuse anything, but must not panic or hang, and a layer it accepts must
// keep the layer model's promises and read without panicking.
func FuzzOpen(f *testing.F) {
	payloads := map[bool][]byte{}
	for _, z := range []bool{false, true} {
		b := buildBlob(f, fuzzTar(f), buildOpts{zstd: z, chunkSize: 100, level: 1})
		payloads[z], _ = splitBlob(f, b.blob, z)
	}
	f.Fuzz(func(t *testing.T, data []byte, kind uint8) {
		// Go's fuzzer has no time limit per input; a hang must show up as a
		// crash that names its input.
		hang := time.AfterFunc(20*time.Second, func() { panic(fmt.Sprintf("input took over 20 s: kind %d, %q", kind, data)) })
		defer hang.Stop()
		blob := data
		if kind%3 < 2 {
			blob = withTOC(payloads[kind%3 == 1], data, kind%3 == 1)
		}
		l, err := Open(context.Background(), &memBlob{data: blob}, digest.FromBytes(data),
			WithMaxEntries(1000), WithMaxChunkSize(1<<16), WithCacheSize(1<<16))
		if err != nil {
			return
		}
		defer l.Close()
		checkInvariants(t, l)
	})
}

func checkInvariants(t *testing.T, l *Layer) {
	ctx := context.Background()
	buf := make([]byte, 4096)
	walk(t, l, func(p string, e layer.Entry) {
		if e.ID == 0 || e.Nlink == 0 {
			t.Fatalf("%s: ID %d, Nlink %d", p, e.ID, e.Nlink)
		}
		if _, err := l.Links(ctx, e.ID); err != nil {
			t.Fatal(err)
		}
		if e.Type != layer.TypeReg {
			return
		}
		c, err := l.Open(ctx, p)
		if err != nil {
			t.Fatalf("Open(%s): %v", p, err)
		}
		for _, off := range []int64{0, e.Size / 2, e.Size - 1} {
			n, err := c.ReadAt(buf, off)
			if n > len(buf) || (err == nil && n != len(buf)) || (err == io.EOF && off+int64(n) != e.Size && off < e.Size) {
				t.Fatalf("ReadAt(%s, %d) = %d, %v", p, off, n, err)
			}
		}
	})
}
