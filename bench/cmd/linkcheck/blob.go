package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"time"
)

// blobServer serves size random bytes at /blob on 127.0.0.1, Range
// requests included, from memory: a registry whose disk is warm.
type blobServer struct {
	url string
	srv *http.Server
}

func startBlobServer(size int64) (*blobServer, error) {
	data := make([]byte, size)
	rand.NewChaCha8([32]byte{'l', 'i', 'n', 'k'}).Read(data)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /blob", func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "blob", time.Time{}, bytes.NewReader(data))
	})
	b := &blobServer{url: "http://" + ln.Addr().String() + "/blob",
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}}
	go b.srv.Serve(ln)
	return b, nil
}

func (b *blobServer) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return b.srv.Shutdown(ctx)
}

// blobSize asks the target itself, not through a relay, how big the blob
// at rawURL is.
func blobSize(ctx context.Context, rawURL string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, rawURL, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ContentLength <= 0 {
		return 0, fmt.Errorf("HEAD %s: %s, length %d: want 200 and a length", rawURL, resp.Status, resp.ContentLength)
	}
	return resp.ContentLength, nil
}

// hostPort is the address to relay to for u: its host and port, the
// scheme's default port if it names none.
func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	port := "80"
	if u.Scheme == "https" {
		port = "443"
	}
	return net.JoinHostPort(u.Hostname(), port)
}
