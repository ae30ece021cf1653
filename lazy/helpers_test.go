package lazy

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/containerd/stargz-snapshotter/estargz/zstdchunked"
	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
)

// memBlob is a Blob in memory that counts what is read from it.
type memBlob struct {
	data  []byte
	reads atomic.Int64
	bytes atomic.Int64
}

func (b *memBlob) Size() int64 { return int64(len(b.data)) }

func (b *memBlob) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	b.reads.Add(1)
	if off < 0 || off >= int64(len(b.data)) {
		return 0, io.EOF
	}
	n := copy(p, b.data[off:])
	b.bytes.Add(int64(n))
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// tarEntry describes one entry of a generated tar.
type tarEntry struct {
	hdr  tar.Header
	data []byte
}

func reg(name string, data []byte) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data))}, data: data}
}

func dir(name string) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755}}
}

func symlink(name, target string) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}}
}

func hardlink(name, target string) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target}}
}

var testTime = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

func makeTar(t testing.TB, ents []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := e.hdr
		if h.ModTime.IsZero() {
			h.ModTime = testTime
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

// zstdCompression is what estargz.WithCompression needs for zstd:chunked.
type zstdCompression struct {
	*zstdchunked.Compressor
	*zstdchunked.Decompressor
}

// built is a lazy blob made by the estargz library from a tar.
type built struct {
	blob      []byte
	tocDigest digest.Digest // of the TOC JSON
	annot     digest.Digest // the manifest annotation: zstd:chunked's checksum, or tocDigest
	position  string        // zstd:chunked's manifest-position annotation; "" for eStargz
}

type buildOpts struct {
	zstd      bool
	chunkSize int
	level     int      // gzip level; -1 keeps estargz's default
	priority  []string // files put before the .prefetch.landmark
}

func buildBlob(t testing.TB, tarData []byte, o buildOpts) built {
	t.Helper()
	opts := []estargz.Option{estargz.WithChunkSize(o.chunkSize), estargz.WithParallelism(1)}
	if o.priority != nil {
		opts = append(opts, estargz.WithPrioritizedFiles(o.priority))
	}
	meta := map[string]string{}
	if o.zstd {
		c := &zstdCompression{&zstdchunked.Compressor{CompressionLevel: zstd.SpeedFastest, Metadata: meta}, &zstdchunked.Decompressor{}}
		opts = append(opts, estargz.WithCompression(c))
	} else if o.level >= 0 {
		opts = append(opts, estargz.WithCompressionLevel(o.level))
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
	out := built{blob: data, tocDigest: b.TOCDigest(), annot: b.TOCDigest()}
	if o.zstd {
		out.annot = digest.Digest(meta[zstdchunked.ManifestChecksumAnnotation])
		out.position = meta[zstdchunked.ManifestPositionAnnotation]
	}
	return out
}

// splitBlob returns a blob's chunk data (everything before its TOC) and
// its TOC JSON.
func splitBlob(t testing.TB, blob []byte, isZstd bool) (payload, tocJSON []byte) {
	t.Helper()
	tail := blob[len(blob)-maxFooterSize:]
	locs := findTOC(tail, int64(len(blob)))
	for _, l := range locs {
		if l.f.zstd != isZstd {
			continue
		}
		j, err := decompressTOC(l.f.dec, blob[l.off:l.off+l.size], 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		return blob[:l.payloadEnd], j
	}
	t.Fatal("no TOC found")
	return nil, nil
}

// withTOC appends tocJSON to payload as a TOC in the given format, as the
// estargz writers do, so that any TOC can be tried against real chunk data.
func withTOC(payload, tocJSON []byte, isZstd bool) []byte {
	out := bytes.NewBuffer(append([]byte(nil), payload...))
	off := int64(len(payload))
	if isZstd {
		enc, _ := zstd.NewWriter(nil)
		comp := enc.EncodeAll(tocJSON, nil)
		out.Write(skippable(comp))
		footer := make([]byte, zstdchunked.FooterSize)
		binary.LittleEndian.PutUint64(footer, uint64(off+8))
		binary.LittleEndian.PutUint64(footer[8:], uint64(len(comp)))
		binary.LittleEndian.PutUint64(footer[16:], uint64(len(tocJSON)))
		binary.LittleEndian.PutUint64(footer[24:], 1)
		copy(footer[32:], []byte{0x47, 0x6e, 0x55, 0x6c, 0x49, 0x6e, 0x55, 0x78})
		out.Write(skippable(footer))
		return out.Bytes()
	}
	gz := gzip.NewWriter(out)
	tw := tar.NewWriter(gz)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: estargz.TOCTarName, Size: int64(len(tocJSON)), Mode: 0o644})
	tw.Write(tocJSON)
	tw.Close()
	gz.Close()
	extra := append([]byte{'S', 'G', 22, 0}, fmt.Sprintf("%016xSTARGZ", off)...)
	out.Write(estargz.CreateGzipFooter(extra))
	return out.Bytes()
}

func skippable(b []byte) []byte {
	h := []byte{0x50, 0x2a, 0x4d, 0x18, 0, 0, 0, 0}
	binary.LittleEndian.PutUint32(h[4:], uint32(len(b)))
	return append(h, b...)
}
