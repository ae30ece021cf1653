package remote

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	ggcr "github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestMain fails the run when goroutines of this package or of net/http
// outlive the tests: every server is closed in t.Cleanup, and a Blob owns
// no goroutine between reads.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := waitLeaks(5 * time.Second); leaked != "" {
			fmt.Fprintf(os.Stderr, "goroutines leaked:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

func waitLeaks(timeout time.Duration) string {
	deadline := time.Now().Add(timeout)
	for {
		leaked := leakedGoroutines()
		if leaked == "" || time.Now().After(deadline) {
			return leaked
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func leakedGoroutines() string {
	ggcr.DefaultTransport.(*http.Transport).CloseIdleConnections()
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var leaked []string
	for i, g := range strings.Split(string(buf), "\n\n") {
		if i == 0 { // this goroutine
			continue
		}
		if strings.Contains(g, "strata/lazy/remote.") || strings.Contains(g, "net/http.") {
			leaked = append(leaked, g)
		}
	}
	return strings.Join(leaked, "\n\n")
}

// serve runs h on a loopback port until the test ends and returns host:port.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h) // binds 127.0.0.1
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// newRegistry is an in-process registry behind wrap (nil: none).
func newRegistry(t *testing.T, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	var h http.Handler = registry.New(registry.Logger(discardLog()))
	if wrap != nil {
		h = wrap(h)
	}
	return serve(t, h)
}

// pushRandom pushes a random image of n layers of about size bytes each.
func pushRandom(t *testing.T, ref string, size, n int64) v1.Image {
	t.Helper()
	img, err := random.Image(size, n)
	if err != nil {
		t.Fatal(err)
	}
	push(t, ref, img)
	return img
}

func push(t *testing.T, ref string, img v1.Image) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := ggcr.Write(r, img, ggcr.WithContext(t.Context())); err != nil {
		t.Fatal(err)
	}
}

// layerBytes returns each layer's blob, compressed as in the registry.
func layerBytes(t *testing.T, img v1.Image) map[string][]byte {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		out[d.String()] = b
	}
	return out
}

func resolve(t *testing.T, ref string, opts ...Option) *Image {
	t.Helper()
	img, err := Resolve(t.Context(), ref, opts...)
	if err != nil {
		t.Fatalf("Resolve(%s): %v", ref, err)
	}
	t.Cleanup(img.CloseIdleConnections)
	return img
}

// readAll reads a whole blob in chunk-sized ReadAt calls, in parallel.
func readAll(ctx context.Context, b *Blob, chunk int64) ([]byte, error) {
	out := make([]byte, b.Size())
	errs := make(chan error, (b.Size()+chunk-1)/chunk)
	for off := int64(0); off < b.Size(); off += chunk {
		go func() {
			p := out[off:min(off+chunk, b.Size())]
			n, err := b.ReadAt(ctx, p, off)
			if err == nil && n != len(p) {
				err = fmt.Errorf("short read %d of %d at %d", n, len(p), off)
			}
			errs <- err
		}()
	}
	var first error
	for range cap(errs) {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return out, first
}

func checkBlob(t *testing.T, b *Blob, want []byte, chunk int64) {
	t.Helper()
	got, err := readAll(t.Context(), b, chunk)
	if err != nil {
		t.Fatalf("reading %s: %v", b.Digest(), err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("blob %s: bytes differ (len %d, want %d)", b.Digest(), len(got), len(want))
	}
}

// fast are retry options that keep failing tests quick.
func fast() []Option {
	return []Option{
		WithBackoff(time.Millisecond, 20*time.Millisecond),
		WithRetries(10),
		WithRequestTimeout(5 * time.Second),
		WithRetryBudget(10 * time.Second),
	}
}

func isBlobGet(r *http.Request) bool {
	return r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:")
}
