package lazy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/containerd/stargz-snapshotter/estargz/zstdchunked"
	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
)

// format is one lazily readable blob format, as the estargz library knows
// it: where its footer is, how its TOC is compressed, and how its chunks are.
type format struct {
	name string
	dec  tocDecompressor
	zstd bool // chunks are zstd frames; otherwise gzip members
}

// tocDecompressor is what the estargz library's decompressors offer beyond
// estargz.Decompressor: the TOC JSON as bytes, before anything parses it.
type tocDecompressor interface {
	estargz.Decompressor
	DecompressTOC(r io.Reader) (io.ReadCloser, error)
}

// formats are tried in the order estargz.Open tries them.
var formats = []*format{
	{name: "estargz", dec: new(estargz.GzipDecompressor)},
	{name: "estargz (legacy footer)", dec: new(estargz.LegacyGzipDecompressor)},
	{name: "zstd:chunked", dec: zstdTOC{new(zstdchunked.Decompressor)}, zstd: true},
}

// zstdTOC is the estargz library's zstd:chunked decompressor, whose TOC
// strata decompresses its own way (decompressAll): the library's decoder
// runs asynchronous goroutines and allocates the buffers of whatever window
// a frame asks for, where strata's is synchronous and bounded, as the
// decoders of chunks are.
type zstdTOC struct{ *zstdchunked.Decompressor }

// decompressAll decompresses a whole TOC at once, into one buffer, not
// through io.ReadAll's growing copies. Fresh memory is what a new process
// pays most for (see AdviseHugeHeap): a streaming decoder took 10-30 ms
// for the 2 MB TOC of a Debian base layer in a new process, this 3-10 ms.
// The decoder is closed after each TOC: one kept for the process held on
// to 40 MB of buffers after a 34 MB TOC (peak RSS of a mount of 100,000
// files: 187 MB with a decoder per TOC, 235 MB with one kept).
func (zstdTOC) decompressAll(compressed []byte, limit int64) ([]byte, error) {
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(uint64(limit)),
		zstd.WithDecoderMaxWindow(64<<20))
	if err != nil {
		return nil, err
	}
	defer d.Close()
	// A TOC's JSON is typically 5-7 times its compressed size.
	hint := min(int64(len(compressed))*8, limit, 64<<20)
	data, err := d.DecodeAll(compressed, make([]byte, 0, hint))
	if errors.Is(err, zstd.ErrDecoderSizeExceeded) || int64(len(data)) > limit {
		return nil, fmt.Errorf("TOC JSON larger than %d bytes", limit)
	}
	if err != nil {
		return nil, fmt.Errorf("decompress TOC: %w", err)
	}
	return data, nil
}

// maxFooterSize is the largest footer of any format (eStargz's 51 bytes).
const maxFooterSize = estargz.FooterSize

// tocLocation is where a footer says the TOC is.
type tocLocation struct {
	f          *format
	payloadEnd int64 // end of the chunk data; the TOC (or its frame) starts here
	off, size  int64 // the compressed TOC
}

// loadedTOC is a TOC that matched the expected digest, not yet decoded:
// buildIndex decodes it entry by entry.
type loadedTOC struct {
	f          *format
	payloadEnd int64
	json       []byte // the TOC JSON
	raw        []byte // the bytes that hash to the expected digest
}

// loadTOC returns the layer's TOC, checked against want before it is
// parsed: from the chunk store, where an earlier Open of the same layer
// (in this process or another) has put it, or from the blob, read twice:
// its last bytes, then everything from the TOC on.
func loadTOC(ctx context.Context, b Blob, want digest.Digest, o *options) (*loadedTOC, error) {
	if t, ok := storedTOC(b, want, o); ok {
		return t, nil
	}
	t, err := fetchTOC(ctx, b, want, o)
	if err == nil {
		put(o.store, want, t.raw)
	}
	return t, err
}

// storedTOC returns the TOC kept in the chunk store under want: the TOC
// JSON for eStargz, the compressed TOC for zstd:chunked (whichever the
// manifest's digest names), verified by the store. The footer is not
// kept, so the end of the chunk data is taken as the start of the footer:
// the layer's last chunk is then fetched with the TOC behind it, which its
// decoder does not read.
func storedTOC(b Blob, want digest.Digest, o *options) (*loadedTOC, bool) {
	data, ok := o.store.Get(want)
	if !ok {
		return nil, false
	}
	f, jsonTOC := formats[0], data
	if !isJSONObject(data) {
		f = formats[2]
		var err error
		if jsonTOC, err = decompressTOC(f.dec, data, o.maxTOCSize); err != nil {
			return nil, false
		}
	}
	end := b.Size() - f.dec.FooterSize()
	if end < 0 {
		return nil, false
	}
	return &loadedTOC{f: f, payloadEnd: end, json: jsonTOC, raw: data}, true
}

// isJSONObject tells a TOC's JSON from a zstd frame (whose first byte is
// 0x28) by its first byte that is not white space.
func isJSONObject(data []byte) bool {
	for _, c := range data {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		}
		return c == '{'
	}
	return false
}

// maxTOCHint bounds what a manifest's TOC position may make the first read
// fetch: a TOC bigger than that is read the usual way, footer first, which
// checks its size against the limit before fetching it.
const maxTOCHint = 64 << 20

// fetchTOC reads the footer and the TOC from the blob: the footer first,
// then the TOC where it says, or both in one read from where the manifest
// says the TOC starts (o.tocOffset). The footer decides either way; a hint
// that proves wrong costs the second read.
func fetchTOC(ctx context.Context, b Blob, want digest.Digest, o *options) (*loadedTOC, error) {
	size := b.Size()
	n := min(size, maxFooterSize)
	first := size - n // where the first read starts
	if h := o.tocOffset; h > 0 && h < first && size-h <= min(maxTOCHint, o.maxTOCSize) {
		first = h
	}
	buf, err := readFull(ctx, b, first, size-first)
	if err != nil {
		return nil, fmt.Errorf("read footer: %w", err)
	}
	tail := buf[len(buf)-int(n):]
	locs := findTOC(tail, size)
	if len(locs) == 0 {
		return nil, ErrFormat
	}
	for _, l := range locs {
		if l.size > o.maxTOCSize {
			return nil, fmt.Errorf("%w: %s TOC of %d bytes is over the limit of %d", ErrInvalidTOC, l.f.name, l.size, o.maxTOCSize)
		}
	}
	start := size - n
	for _, l := range locs {
		start = min(start, l.off)
	}
	var region []byte // the blob from start to its end: the TOCs, then the footer
	if start >= first {
		region = buf[start-first:]
	} else {
		head, err := readFull(ctx, b, start, size-n-start)
		if err != nil {
			return nil, fmt.Errorf("read TOC: %w", err)
		}
		region = append(head, tail...)
	}
	var errs []error
	for _, l := range locs {
		t, err := verifyTOC(l, region[l.off-start:l.off-start+l.size], want, o)
		if err == nil {
			return t, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", l.f.name, err))
	}
	return nil, errors.Join(errs...)
}

// findTOC returns the TOC locations named by the footers found in tail (the
// last bytes of a blob of the given size) that lie inside the blob.
func findTOC(tail []byte, size int64) []tocLocation {
	var locs []tocLocation
	for _, f := range formats {
		fs := f.dec.FooterSize()
		if fs > int64(len(tail)) {
			continue
		}
		payload, off, tsize, err := parseFooter(f.dec, tail[int64(len(tail))-fs:])
		if err != nil {
			continue
		}
		if off >= 0 && tsize <= 0 {
			tsize = size - off - fs // estargz.Open's rule: the TOC runs up to the footer
		}
		if payload < 0 || off < payload || tsize <= 0 || off > size-fs-tsize {
			continue
		}
		locs = append(locs, tocLocation{f: f, payloadEnd: payload, off: off, size: tsize})
	}
	return locs
}

// parseFooter calls the library's footer parser, which indexes the bytes it
// is given by offsets read from those bytes: a crafted footer can make it
// panic, and a blob's bytes must never crash strata.
func parseFooter(d estargz.Decompressor, p []byte) (payload, off, size int64, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("malformed footer: %v", r)
		}
	}()
	return d.ParseFooter(p)
}

// verifyTOC decompresses the TOC at l and compares it with want, before
// anything decodes it. want may be the digest of the TOC JSON (eStargz's
// containerd.io/snapshot/stargz/toc.digest) or of the compressed TOC
// (zstd:chunked's io.github.containers.zstd-chunked.manifest-checksum).
func verifyTOC(l tocLocation, compressed []byte, want digest.Digest, o *options) (*loadedTOC, error) {
	jsonTOC, err := decompressTOC(l.f.dec, compressed, o.maxTOCSize)
	if err != nil {
		return nil, err
	}
	alg := want.Algorithm()
	got, raw := alg.FromBytes(jsonTOC), jsonTOC
	if got != want {
		if alg.FromBytes(compressed) != want {
			return nil, fmt.Errorf("%w: TOC JSON is %s, want %s", ErrTOCDigest, got, want)
		}
		raw = compressed
	}
	return &loadedTOC{f: l.f, payloadEnd: l.payloadEnd, json: jsonTOC, raw: raw}, nil
}

func decompressTOC(d tocDecompressor, compressed []byte, limit int64) (_ []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("malformed TOC: %v", r)
		}
	}()
	if z, ok := d.(zstdTOC); ok {
		return z.decompressAll(compressed, limit)
	}
	rc, err := d.DecompressTOC(bytes.NewReader(compressed))
	if err != nil {
		return nil, fmt.Errorf("decompress TOC: %w", err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, fmt.Errorf("decompress TOC: %w", err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("TOC JSON larger than %d bytes", limit)
	}
	return data, nil
}

// tocJSON are the options TOC JSON is decoded with: JSON v2's decoder
// (github.com/go-json-experiment/json, what Go ships as encoding/json/v2
// behind GOEXPERIMENT=jsonv2) with encoding/json's leniency, which the
// estargz library's own parser has: names matched case-insensitively, the
// last of duplicate names taken, invalid UTF-8 replaced. It decodes a
// Debian base layer's TOC (6,689 entries, 2 MB) in 5 ms where encoding/json
// took 18, allocating 0.7 MB rather than 2.8, and a layer must be open
// before anything is mounted.
var tocJSON = jsonv2.JoinOptions(jsonv2.MatchCaseInsensitiveNames(true),
	jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))

// decodeTOC decodes the JSON object {"version": N, "entries": [...]} one
// entry at a time and hands each to visit, so that an entry count past
// limit is refused before it is allocated, and the entries are never all
// held at once: the entry visit gets is the one the next decodes into, so
// visit must not keep it. A second list of entries is refused, where
// encoding/json would take the last.
func decodeTOC(data []byte, limit int, visit func(i int, te *estargz.TOCEntry) error) error {
	dec := jsontext.NewDecoder(bytes.NewBuffer(data), tocJSON) // parses data in place
	if err := expectDelim(dec, '{'); err != nil {
		return err
	}
	listed := false
	for dec.PeekKind() == '"' {
		key, err := dec.ReadToken()
		if err != nil {
			return err
		}
		if !strings.EqualFold(key.String(), "entries") {
			if err := dec.SkipValue(); err != nil {
				return err
			}
			continue
		}
		if listed {
			return errors.New("a second list of entries")
		}
		listed = true
		if err := decodeEntries(dec, limit, visit); err != nil {
			return err
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return err
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		return errors.New("data after the TOC object")
	}
	return nil
}

func decodeEntries(dec *jsontext.Decoder, limit int, visit func(int, *estargz.TOCEntry) error) error {
	if err := expectDelim(dec, '['); err != nil {
		return err
	}
	var te estargz.TOCEntry
	for i := 0; dec.PeekKind() != ']'; i++ {
		if i >= limit {
			return fmt.Errorf("more than %d entries", limit)
		}
		te = estargz.TOCEntry{}
		if err := jsonv2.UnmarshalDecode(dec, &te, tocJSON); err != nil {
			return fmt.Errorf("entry %d: %w", i, err)
		}
		if err := visit(i, &te); err != nil {
			return err
		}
	}
	return expectDelim(dec, ']')
}

// expectDelim reads the next token, which must be the delimiter want.
func expectDelim(dec *jsontext.Decoder, want jsontext.Kind) error {
	tok, err := dec.ReadToken()
	if err != nil {
		return err
	}
	if tok.Kind() != want {
		return fmt.Errorf("TOC JSON: got %v, want %v", tok, want)
	}
	return nil
}

// readFull reads n bytes at off, or fails.
func readFull(ctx context.Context, b Blob, off, n int64) ([]byte, error) {
	p := make([]byte, n)
	if err := readInto(ctx, b, off, p); err != nil {
		return nil, err
	}
	return p, nil
}

// readInto fills p with the blob's bytes from off.
func readInto(ctx context.Context, b Blob, off int64, p []byte) error {
	n := int64(len(p))
	got := 0
	for got < len(p) {
		k, err := b.ReadAt(ctx, p[got:], off+int64(got))
		got += k
		if got == len(p) {
			break
		}
		if err == io.EOF {
			return fmt.Errorf("bytes %d-%d: %w", off, off+n-1, io.ErrUnexpectedEOF)
		}
		if err != nil {
			return fmt.Errorf("bytes %d-%d: %w", off, off+n-1, err)
		}
		if k == 0 {
			return fmt.Errorf("bytes %d-%d: %w", off, off+n-1, io.ErrNoProgress)
		}
	}
	return nil
}
