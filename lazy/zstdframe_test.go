package lazy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// streamFirst is what a streaming decoder makes of src's first n bytes:
// decodeFrames must agree with it whenever it succeeds.
func streamFirst(src []byte, n int64) ([]byte, error) {
	d, err := zstd.NewReader(bytes.NewReader(src), zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxWindow(8<<20))
	if err != nil {
		return nil, err
	}
	defer d.Close()
	out := make([]byte, n)
	_, err = io.ReadFull(d, out)
	return out, err
}

func encodeFrame(t testing.TB, data []byte) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderCRC(true))
	if err != nil {
		t.Fatal(err)
	}
	return enc.EncodeAll(data, nil)
}

// TestDecodeFrames decodes every chunk of real zstd:chunked blobs as a
// fetch window does, and chunks laid out in ways the writers could: in two
// frames, after a skippable frame, followed by other frames.
func TestDecodeFrames(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	var entries []tarEntry
	for i := range 40 {
		n := 1 + r.IntN(20<<10)
		if i%10 == 9 {
			n = 300 << 10
		}
		entries = append(entries, reg(string(rune('a'+i%26))+string(rune('a'+i/26)), compressible(r, n)))
	}
	bl := buildBlob(t, makeTar(t, entries), buildOpts{zstd: true, chunkSize: 64 << 10})
	l, err := Open(context.Background(), &memBlob{data: bl.blob}, bl.annot)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, c := range l.idx.order {
		src := bl.blob[c.cOff:c.cEnd]
		got, ok := decodeFrames(src, c.size)
		if !ok {
			t.Fatalf("chunk at %d+%d: not decoded whole", c.cOff, c.size)
		}
		if err := verifyChunk(got, c); err != nil {
			t.Fatal(err)
		}
	}

	a, b := compressible(r, 3000), compressible(r, 5000)
	whole := append(append([]byte(nil), a...), b...)
	header := encodeFrame(t, make([]byte, 512))
	skip := skippable([]byte("not data"))
	for _, tc := range []struct {
		name string
		src  []byte
		n    int64
		ok   bool
	}{
		{"two frames", append(append(encodeFrame(t, a), encodeFrame(t, b)...), header...), int64(len(whole)), true},
		{"skippable first", append(append(skip, encodeFrame(t, whole)...), header...), int64(len(whole)), true},
		{"prefix of a frame", encodeFrame(t, whole), 100, true},
		{"frame cut short", encodeFrame(t, whole)[:50], int64(len(whole)), false},
		{"too few bytes in the frames", encodeFrame(t, a), int64(len(whole)), false},
		{"not zstd", bytes.Repeat([]byte("x"), 100), 10, false},
		{"empty", nil, 10, false},
		{"larger than decodeAllMax", encodeFrame(t, a), decodeAllMax + 1, false},
	} {
		got, ok := decodeFrames(tc.src, tc.n)
		if ok != tc.ok {
			t.Errorf("%s: ok %v, want %v", tc.name, ok, tc.ok)
			continue
		}
		if ok && !bytes.Equal(got, whole[:tc.n]) {
			t.Errorf("%s: wrong bytes", tc.name)
		}
	}
}

// FuzzDecodeFrames: on any input, decodeFrames either declines or gives
// exactly what a streaming decoder reads.
func FuzzDecodeFrames(f *testing.F) {
	r := rand.New(rand.NewPCG(9, 10))
	data := compressible(r, 20000)
	f.Add(encodeFrame(f, data), uint32(20000))
	f.Add(append(encodeFrame(f, data[:7000]), encodeFrame(f, data[7000:])...), uint32(20000))
	f.Add(append(skippable([]byte("x")), encodeFrame(f, data)...), uint32(100))
	f.Fuzz(func(t *testing.T, src []byte, n uint32) {
		hang := time.AfterFunc(5*time.Second, func() { panic(fmt.Sprintf("input took over 5 s: n %d, %q", n, src)) })
		defer hang.Stop()
		size := int64(n % (64 << 10))
		got, ok := decodeFrames(src, size)
		if !ok {
			return
		}
		want, err := streamFirst(src, size)
		if err != nil {
			t.Fatalf("decodeFrames gave %d bytes where the stream fails: %v", len(got), err)
		}
		if !bytes.Equal(got, want) {
			t.Fatal("decodeFrames and the stream differ")
		}
	})
}
