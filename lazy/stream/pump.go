package stream

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
	"github.com/stratafs/strata/layer"
)

type compression uint8

const (
	compNone compression = iota
	compGzip
	compZstd
)

// mediaTypes are the layer media types of the OCI image spec and Docker's
// manifest v2 that carry a plain tar.
var mediaTypes = map[string]compression{
	"application/vnd.oci.image.layer.v1.tar":                       compNone,
	"application/vnd.oci.image.layer.v1.tar+gzip":                  compGzip,
	"application/vnd.oci.image.layer.v1.tar+zstd":                  compZstd,
	"application/vnd.oci.image.layer.nondistributable.v1.tar":      compNone,
	"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": compGzip,
	"application/vnd.oci.image.layer.nondistributable.v1.tar+zstd": compZstd,
	"application/vnd.docker.image.rootfs.diff.tar":                 compNone,
	"application/vnd.docker.image.rootfs.diff.tar.gzip":            compGzip,
	"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip":    compGzip,
	"application/vnd.docker.image.rootfs.diff.tar.zstd":            compZstd,
	"application/vnd.docker.image.rootfs.foreign.diff.tar":         compNone,
}

// run is the stream goroutine: it owns the spool's writes and ends by
// putting the layer into its final state.
func (l *Layer) run(ctx context.Context) {
	defer close(l.stopped)
	err := l.stream(ctx)
	if ctx.Err() != nil {
		err = ErrClosed // only Close cancels the stream; its waiters learn why
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case err == nil:
		l.done = true
	case l.err == nil:
		l.err = err
	}
	l.started = true
	l.notifyLocked()
}

// stream reads the blob once: blob -> (blob digest) -> decompressor ->
// (diffID) -> tar. What the tar reader leaves (end-of-archive padding, a
// blob's tail) is read too, so that both digests cover every byte.
func (l *Layer) stream(ctx context.Context) error {
	var raw io.Reader = &blobReader{ctx: ctx, blob: l.blob, mem: make([]byte, l.o.chunkSize), read: &l.read}
	blobV := verifier(l.o.blobDigest)
	if blobV != nil {
		raw = io.TeeReader(raw, blobV)
	}
	dec, closeDec, err := decompress(l.comp, raw)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrStream, err)
	}
	defer closeDec()
	plain := dec
	diffV := verifier(l.diffID)
	if diffV != nil {
		plain = io.TeeReader(dec, diffV)
	}
	if err := l.readTar(plain); err != nil {
		return err
	}
	for _, r := range []io.Reader{plain, raw} {
		if _, err := io.Copy(io.Discard, r); err != nil {
			return fmt.Errorf("%w: after the tar: %w", ErrStream, err)
		}
	}
	if diffV != nil && !diffV.Verified() {
		return fmt.Errorf("%w: the uncompressed layer is not %s", ErrDigest, l.diffID)
	}
	if blobV != nil && !blobV.Verified() {
		return fmt.Errorf("%w: the blob is not %s", ErrDigest, l.o.blobDigest)
	}
	return nil
}

func verifier(d digest.Digest) digest.Verifier {
	if d == "" {
		return nil
	}
	return d.Verifier()
}

func decompress(c compression, r io.Reader) (io.Reader, func(), error) {
	switch c {
	case compGzip:
		z, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, fmt.Errorf("gzip: %w", err)
		}
		return z, func() { z.Close() }, nil
	case compZstd:
		// One goroutine: the stream is read sequentially anyway, and a
		// synchronous decoder has nothing to leak.
		z, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, nil, fmt.Errorf("zstd: %w", err)
		}
		return z, z.Close, nil
	}
	return r, func() {}, nil
}

// readTar indexes every entry of the tar, spooling file bytes as it goes.
func (l *Layer) readTar(r io.Reader) error {
	tr := tar.NewReader(r)
	buf := make([]byte, 1<<20)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: tar: %w", ErrStream, err)
		}
		if err := l.addEntry(tr, h, buf); err != nil {
			return fmt.Errorf("%w: tar entry %q: %w", ErrStream, h.Name, err)
		}
	}
}

func (l *Layer) addEntry(tr *tar.Reader, h *tar.Header, buf []byte) error {
	if h.Typeflag == tar.TypeXGlobalHeader {
		return nil // applies to later headers; archive/tar has already merged it
	}
	p, err := cleanName(h.Name)
	if err != nil {
		return err
	}
	n, link, err := nodeOf(h)
	if err != nil {
		return err
	}
	if p != "" { // every path is inside the root: naming it again leaves nothing
		l.mu.Lock()
		l.cur = p
		l.notifyLocked() // in walk order, leaving a directory completes it
		l.mu.Unlock()
	}
	if n.file != nil {
		if n.file, err = l.spoolFile(tr, n.e.Size, buf); err != nil {
			return err
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	err = l.publishLocked(p, n, link)
	if errors.Is(err, errOrderBroken) {
		err = fmt.Errorf("%w: %w", ErrOrder, err)
	}
	l.started = true
	l.notifyLocked()
	return err
}

// publishLocked makes the entry visible, its bytes being in the spool.
func (l *Layer) publishLocked(p string, n *node, link string) error {
	if link != "" {
		switch t := l.t.find(link); {
		case t == nil: // in a layer below: the union resolves it
			n.e.Type, n.e.Target, n.file = layer.TypeLowerLink, link, nil
		case t.e.Type == layer.TypeDir:
			return fmt.Errorf("hard link target %q is a directory", link)
		default:
			name := n.e.Name
			n.e, n.file = t.e, t.file
			n.e.Name = name
		}
	}
	if p == "" {
		return l.t.setRoot(n)
	}
	return l.t.put(p, n)
}

// spoolFile appends a file's bytes to the spool.
func (l *Layer) spoolFile(r io.Reader, size int64, buf []byte) (*fileData, error) {
	off, err := l.spool.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	// Hide ReadFrom: *os.File would copy through its own small buffer.
	n, err := io.CopyBuffer(struct{ io.Writer }{l.spool}, r, buf)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	if n != size {
		return nil, fmt.Errorf("spool: %d bytes of %d", n, size)
	}
	return &fileData{off: off, size: size}, nil
}

// blobReader reads a Blob sequentially in large chunks.
type blobReader struct {
	ctx  context.Context // the layer's: canceled by Close
	blob Blob
	mem  []byte // the chunk buffer
	buf  []byte // unread bytes of the latest chunk, inside mem
	off  int64  // blob offset just past buf
	read *atomic.Int64
}

func (b *blobReader) Read(p []byte) (int, error) {
	if len(b.buf) == 0 {
		if err := b.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, b.buf)
	b.buf = b.buf[n:]
	return n, nil
}

func (b *blobReader) fill() error {
	if err := b.ctx.Err(); err != nil {
		return err
	}
	size := b.blob.Size()
	if b.off >= size {
		return io.EOF
	}
	want := int(min(int64(len(b.mem)), size-b.off))
	buf := b.mem[:want]
	n, err := b.blob.ReadAt(b.ctx, buf, b.off)
	if n < want {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF // the blob is shorter than its size
		}
		return fmt.Errorf("blob at %d: %w", b.off, err)
	}
	b.buf, b.off = buf[:n], b.off+int64(n)
	b.read.Add(int64(n))
	return nil
}
