package stream

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync/atomic"

	"github.com/stratafs/strata/layer"
)

// Content is an open regular file of a Layer. Its bytes are all in the
// spool when it is opened, so a read never waits for the stream.
type Content struct {
	l      *Layer
	path   string
	f      fileData
	closed atomic.Bool
}

var _ layer.Content = (*Content)(nil)

// ReadAt reads with context.Background(), since io.ReaderAt has none.
func (c *Content) ReadAt(p []byte, off int64) (int, error) {
	return c.ReadAtContext(context.Background(), p, off)
}

// ReadAtContext reads len(p) bytes at off from the spool and follows
// io.ReaderAt's contract. A layer that has failed (a digest mismatch found
// at the end of the stream included) fails every read.
func (c *Content) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	if c.closed.Load() {
		return 0, os.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, fmt.Errorf("stream %s: read %q at %d: negative offset", c.l.name, c.path, off)
	}
	if err := c.l.failure(); err != nil {
		return 0, fmt.Errorf("stream %s: read %q: %w", c.l.name, c.path, err)
	}
	if off >= c.f.size {
		return 0, io.EOF
	}
	want := p[:min(int64(len(p)), c.f.size-off)]
	n, err := c.l.spool.ReadAt(want, c.f.off+off)
	if n < len(want) {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF // the spool lost bytes it had
		}
		return n, fmt.Errorf("stream %s: read %q at %d: %w", c.l.name, c.path, off, err)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Close ends the use of c; later reads fail.
func (c *Content) Close() error {
	c.closed.Store(true)
	return nil
}
