package main

import (
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

// countingRegistry is go-containerregistry's in-memory registry, counting
// the blob bytes it sends: a second account of what each system fetched,
// independent of the system's own.
type countingRegistry struct {
	addr  string
	inner http.Handler
	blobs atomic.Int64
	srv   *http.Server
}

func startRegistry() (*countingRegistry, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	c := &countingRegistry{addr: ln.Addr().String(),
		inner: registry.New(registry.Logger(log.New(io.Discard, "", 0)))}
	c.srv = &http.Server{Handler: c, ReadHeaderTimeout: 10 * time.Second}
	go c.srv.Serve(ln)
	return c, nil
}

func (c *countingRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") &&
		!strings.Contains(r.URL.Path, "/blobs/uploads") {
		w = &countingWriter{ResponseWriter: w, n: &c.blobs}
	}
	c.inner.ServeHTTP(w, r)
}

func (c *countingRegistry) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.srv.Shutdown(ctx); err != nil {
		return c.srv.Close()
	}
	return nil
}

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (w *countingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.n.Add(int64(n))
	return n, err
}
