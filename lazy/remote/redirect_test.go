package remote

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// store stands for object storage behind presigned URLs: it serves blobs
// (with Range) at /blobs/<digest>?sig=<generation> and refuses any other
// generation with 403, as an expired signature is refused.
type store struct {
	gen     atomic.Int64
	served  atomic.Int64
	refused atomic.Int64

	mu    sync.Mutex // guards blobs
	blobs map[string][]byte
}

func (s *store) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "" {
		http.Error(w, "credentials leaked to storage", http.StatusBadRequest)
		return
	}
	if r.URL.Query().Get("sig") != strconv.FormatInt(s.gen.Load(), 10) {
		s.refused.Add(1)
		http.Error(w, "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>", http.StatusForbidden)
		return
	}
	s.mu.Lock()
	blob, ok := s.blobs[strings.TrimPrefix(r.URL.Path, "/blobs/")]
	s.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	s.served.Add(1)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(blob))
}

// redirector sends every blob GET to the store, signed with the store's
// current generation plus skew (non-zero: a signature the store refuses).
type redirector struct {
	next      http.Handler
	storeURL  string
	st        *store
	skew      atomic.Int64
	redirects atomic.Int64
}

func (rd *redirector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !isBlobGet(r) {
		rd.next.ServeHTTP(w, r)
		return
	}
	rd.redirects.Add(1)
	digest := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
	sig := strconv.FormatInt(rd.st.gen.Load()+rd.skew.Load(), 10)
	http.Redirect(w, r, rd.storeURL+"/blobs/"+digest+"?sig="+sig, http.StatusTemporaryRedirect)
}

// newRedirected is a registry that hands its blobs to a store, holding a
// pushed random image.
func newRedirected(t *testing.T, size, layers int64) (string, *redirector, map[string][]byte) {
	t.Helper()
	st := &store{blobs: map[string][]byte{}}
	rd := &redirector{st: st, storeURL: "http://" + serve(t, st)}
	host := newRegistry(t, func(next http.Handler) http.Handler { rd.next = next; return rd })
	pushed := pushRandom(t, host+"/test/img:v1", size, layers)
	want := layerBytes(t, pushed)
	cfgName, _ := pushed.ConfigName()
	cfg, _ := pushed.RawConfigFile()
	st.mu.Lock()
	defer st.mu.Unlock()
	for d, b := range want {
		st.blobs[d] = b
	}
	st.blobs[cfgName.String()] = cfg
	return host, rd, want
}

func TestReadAtRedirect(t *testing.T) {
	host, rd, want := newRedirected(t, 32<<10, 2)
	st := rd.st
	img := resolve(t, host+"/test/img:v1", WithKeychain(staticKeychain{Username: "u", Password: "p"}))
	b := firstLayer(t, img)
	blob := want[b.Digest()]
	read := func(off, n int64) {
		t.Helper()
		p := make([]byte, n)
		if _, err := b.ReadAt(t.Context(), p, off); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(p, blob[off:off+n]) {
			t.Fatalf("bytes %d+%d differ", off, n)
		}
	}
	before := rd.redirects.Load()
	read(0, 1000)
	read(5000, 3000)
	if got := rd.redirects.Load() - before; got != 1 {
		t.Errorf("%d redirects for two reads, want 1 (the target is remembered)", got)
	}

	st.gen.Add(1) // every URL handed out so far expires
	read(100, 10000)
	if got := rd.redirects.Load() - before; got != 2 || st.refused.Load() != 1 {
		t.Errorf("after expiry: %d redirects, %d refusals; want 2, 1", got, st.refused.Load())
	}
	if s := b.Stats(); s.Retries != 1 || s.Failures != 1 {
		t.Errorf("stats %+v, want the one refusal retried", s)
	}
}

// TestReadAtRedirectStaysRefused: a fresh URL that is refused too is an
// authorisation failure, after exactly one re-resolve.
func TestReadAtRedirectStaysRefused(t *testing.T) {
	host, rd, _ := newRedirected(t, 4096, 1)
	img := resolve(t, host+"/test/img:v1")
	b := firstLayer(t, img)
	if _, err := b.ReadAt(t.Context(), make([]byte, 100), 1); err != nil {
		t.Fatal(err)
	}
	rd.st.gen.Add(1)    // the remembered URL expires
	rd.skew.Store(1000) // and the registry's fresh ones are refused too
	_, err := b.ReadAt(t.Context(), make([]byte, 100), 1)
	checkReadError(t, err, ErrUnauthorized, b.Digest())
	if n := rd.st.refused.Load(); n != 2 {
		t.Errorf("%d refusals, want 2 (remembered URL, then the fresh one)", n)
	}
}
