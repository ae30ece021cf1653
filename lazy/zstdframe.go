package lazy

import (
	"sync"

	"github.com/klauspost/compress/zstd"
)

// A zstd:chunked chunk starts a zstd frame of its own (the writers close
// the frame at every chunk's end), which holds the chunk's bytes and, after
// a file's last chunk, the padding of its tar entry; the next tar header
// comes in frames after it. When a fetch window holds a chunk's compressed
// bytes, decodeFrames decodes the chunk's frames whole into a scratch
// buffer kept between chunks, and copies the chunk out of it. A streaming
// decoder does the same through a ring the size of the frame's window
// (8 MiB as the writers set it, held by every pooled decoder), and costs a
// reset per chunk.
//
// The frames are cut by walking their block headers, so that the header
// frames after the chunk are never decoded. Anything this cannot parse or
// decode sends the chunk to the streaming decoder, which reads exactly the
// chunk's bytes or fails with the reason. Neither way serves a byte that
// does not match the chunk's digest.

// decodeAllMax bounds the chunks decoded whole in memory; a larger one
// (a TOC may set chunks of up to Options' maximum) streams.
const decodeAllMax = 16 << 20

// zstdAll is the decoder of whole frames, shared: DecodeAll may be called
// concurrently, up to the decoder's concurrency at once, and runs no
// goroutine. Its buffers are those of its block decoders, not windows.
var zstdAll = sync.OnceValues(func() (*zstd.Decoder, error) {
	return zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(64<<20), zstd.WithDecoderMaxMemory(decodeAllMax))
})

// decodeFrames decodes the zstd frames at the start of src until they
// have given at least n bytes, and returns the first n. ok is false when
// the frames cannot be cut from src or do not decode; the caller then
// decodes src as a stream.
func decodeFrames(src []byte, n int64) (data []byte, ok bool) {
	if n <= 0 || n > decodeAllMax {
		return nil, false
	}
	d, err := zstdAll()
	if err != nil {
		return nil, false
	}
	bp, _ := scratchBufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	defer scratchBufs.Put(bp)
	// The decoder takes its fast path only with a block's worth of room
	// (128 KiB, and some) past what it has written.
	if need := int(n) + scratchRoom; cap(*bp) < need {
		*bp = make([]byte, 0, need)
	}
	out := (*bp)[:0]
	for int64(len(out)) < n {
		size, ok := zstdFrameSize(src)
		if !ok {
			return nil, false
		}
		if out, err = d.DecodeAll(src[:size], out); err != nil {
			return nil, false
		}
		src = src[size:]
	}
	*bp = out[:0]
	return append([]byte(nil), out[:n]...), true
}

// scratchRoom is what decodeFrames' scratch buffers hold beyond a chunk:
// one block, the decoder's slack, and the tar padding (up to 511 bytes) and
// archive end (1024 bytes) that may share the chunk's frame.
const scratchRoom = 128<<10 + 64 + 2048

// scratchBufs keeps decodeFrames' buffers between chunks.
var scratchBufs sync.Pool

// zstdFrameSize returns the size of the zstd frame (or skippable frame)
// at the start of src, found from its header and its blocks' headers
// (RFC 8878, section 3.1), without decoding it.
func zstdFrameSize(src []byte) (int, bool) {
	var h zstd.Header
	if err := h.Decode(src); err != nil {
		return 0, false
	}
	if h.Skippable {
		size := h.HeaderSize + int(h.SkippableSize)
		return size, size <= len(src)
	}
	at := h.HeaderSize
	for {
		if at+3 > len(src) {
			return 0, false
		}
		bh := uint32(src[at]) | uint32(src[at+1])<<8 | uint32(src[at+2])<<16
		at += 3
		last, kind, size := bh&1 == 1, (bh>>1)&3, int(bh>>3)
		switch kind {
		case 0, 2: // raw, compressed: size bytes follow
			at += size
		case 1: // RLE: one byte, repeated size times
			at++
		default: // reserved
			return 0, false
		}
		if at > len(src) {
			return 0, false
		}
		if last {
			break
		}
	}
	if h.HasCheckSum {
		at += 4
	}
	return at, at <= len(src)
}
