package remote

import (
	"bytes"
	"encoding/json"
	"errors"
	digest "github.com/opencontainers/go-digest"
	"io"
	"log"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	ggcr "github.com/google/go-containerregistry/pkg/v1/remote"
)

func discardLog() *log.Logger { return log.New(io.Discard, "", 0) }

func TestResolveTagAndDigest(t *testing.T) {
	host := newRegistry(t, nil)
	want := pushRandom(t, host+"/test/img:v1", 4096, 3)
	digest, _ := want.Digest()
	wantManifest, _ := want.Manifest()
	wantConfig, _ := want.RawConfigFile()

	for _, ref := range []string{host + "/test/img:v1", host + "/test/img@" + digest.String()} {
		img := resolve(t, ref)
		if img.Digest() != digest.String() || !strings.HasSuffix(img.Name(), "@"+digest.String()) {
			t.Errorf("%s: digest %s name %s, want %s", ref, img.Digest(), img.Name(), digest)
		}
		layers := img.Layers()
		if len(layers) != len(wantManifest.Layers) {
			t.Fatalf("%s: %d layers, want %d", ref, len(layers), len(wantManifest.Layers))
		}
		for i, l := range layers {
			w := wantManifest.Layers[i]
			if l.Digest != w.Digest.String() || l.Size != w.Size || l.MediaType != string(w.MediaType) {
				t.Errorf("%s: layer %d = %+v, want %+v", ref, i, l, w)
			}
		}
		if !bytes.Equal(img.RawConfig(), wantConfig) {
			t.Errorf("%s: config differs", ref)
		}
		if _, err := img.ConfigFile(); err != nil {
			t.Errorf("%s: %v", ref, err)
		}
	}
}

// otherArch is an architecture that is not the host's.
func otherArch() string {
	if runtime.GOARCH == "s390x" {
		return "riscv64"
	}
	return "s390x"
}

func pushIndex(t *testing.T, ref string) (host, other v1.Image) {
	t.Helper()
	host, _ = random.Image(1024, 1)
	other, _ = random.Image(1024, 1)
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: other, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: otherArch()}}},
		mutate.IndexAddendum{Add: host, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}}},
	)
	r, _ := name.ParseReference(ref)
	if err := ggcr.WriteIndex(r, idx, ggcr.WithContext(t.Context())); err != nil {
		t.Fatal(err)
	}
	return host, other
}

func TestResolveIndexPicksPlatform(t *testing.T) {
	reg := newRegistry(t, nil)
	ref := reg + "/test/multi:latest"
	hostImg, otherImg := pushIndex(t, ref)
	hostDigest, _ := hostImg.Digest()
	otherDigest, _ := otherImg.Digest()

	if got := resolve(t, ref).Digest(); got != hostDigest.String() {
		t.Errorf("default platform: got %s, want host image %s", got, hostDigest)
	}
	if got := resolve(t, ref, WithPlatform("linux/"+otherArch())).Digest(); got != otherDigest.String() {
		t.Errorf("WithPlatform: got %s, want %s", got, otherDigest)
	}
	_, err := Resolve(t.Context(), ref, WithPlatform("windows/arm"))
	if !errors.Is(err, ErrNoPlatform) {
		t.Errorf("missing platform: got %v, want ErrNoPlatform", err)
	}
}

// putRaw stores a manifest as a registry that dropped its media type would
// serve it: no mediaType field, a generic Content-Type.
func putRaw(t *testing.T, host, repoTag string, raw []byte) {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "mediaType")
	body, _ := json.Marshal(m)
	repo, tag, _ := strings.Cut(repoTag, ":")
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPut,
		"http://"+host+"/v2/"+repo+"/manifests/"+tag, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT manifest: %s", resp.Status)
	}
}

func TestResolveWithoutMediaType(t *testing.T) {
	host := newRegistry(t, nil)
	hostImg, _ := pushIndex(t, host+"/test/idx:full")
	want, _ := hostImg.Manifest()
	rawImage, _ := hostImg.RawManifest()
	putRaw(t, host, "test/idx:image", rawImage)

	r, _ := name.ParseReference(host + "/test/idx:full")
	desc, err := ggcr.Get(r, ggcr.WithContext(t.Context()))
	if err != nil {
		t.Fatal(err)
	}
	putRaw(t, host, "test/idx:index", desc.Manifest)

	for _, tag := range []string{"image", "index"} {
		img := resolve(t, host+"/test/idx:"+tag)
		layers := img.Layers()
		if len(layers) != 1 || layers[0].Digest != want.Layers[0].Digest.String() {
			t.Errorf("%s: layers %+v, want %v", tag, layers, want.Layers)
		}
	}
}

func TestResolveNotFound(t *testing.T) {
	host := newRegistry(t, nil)
	pushRandom(t, host+"/test/img:v1", 1024, 1)
	missing := []string{
		host + "/test/img:nope",
		host + "/test/nope:v1",
		host + "/test/img@sha256:" + strings.Repeat("0", 64),
	}
	for _, ref := range missing {
		if _, err := Resolve(t.Context(), ref); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: got %v, want ErrNotFound", ref, err)
		}
	}
	start := time.Now()
	if _, err := Resolve(t.Context(), unreachable(t)+"/test/img:v1"); !errors.Is(err, ErrUnavailable) || time.Since(start) > 5*time.Second {
		t.Errorf("unreachable registry: got %v after %v, want ErrUnavailable", err, time.Since(start))
	}
	if _, err := Resolve(t.Context(), "Not A Reference!"); !errors.Is(err, ErrInvalidReference) {
		t.Errorf("bad reference: got %v, want ErrInvalidReference", err)
	}
}

// unreachable returns a loopback address where nothing listens.
func unreachable(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

type staticKeychain authn.AuthConfig

func (k staticKeychain) Resolve(authn.Resource) (authn.Authenticator, error) {
	return authn.FromConfig(authn.AuthConfig(k)), nil
}

// basicAuth lets through only requests with user:secret, everywhere.
func basicAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "user" || p != "secret" {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED"}]}`, http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func TestResolveUnauthorized(t *testing.T) {
	host := newRegistry(t, basicAuth)
	ref := host + "/test/private:v1"
	img, _ := random.Image(2048, 2)
	r, _ := name.ParseReference(ref)
	if err := ggcr.Write(r, img, ggcr.WithContext(t.Context()),
		ggcr.WithAuth(&authn.Basic{Username: "user", Password: "secret"})); err != nil {
		t.Fatal(err)
	}

	if _, err := Resolve(t.Context(), ref, WithKeychain(staticKeychain{})); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("no credentials: got %v, want ErrUnauthorized", err)
	}
	wrong := staticKeychain{Username: "user", Password: "guess"}
	if _, err := Resolve(t.Context(), ref, WithKeychain(wrong)); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("wrong credentials: got %v, want ErrUnauthorized", err)
	}

	good := resolve(t, ref, WithKeychain(staticKeychain{Username: "user", Password: "secret"}))
	want := layerBytes(t, img)
	for i := range good.Layers() {
		b, err := good.Layer(i)
		if err != nil {
			t.Fatal(err)
		}
		checkBlob(t, b, want[b.Digest()], 512)
	}
}

func TestOptionsValidate(t *testing.T) {
	bad := []Option{
		WithPlatform("linux"), WithMaxInFlight(0), WithRetries(-1),
		WithRequestTimeout(0), WithRetryBudget(-1), WithBackoff(0, 1),
		WithTransport(nil), WithKeychain(nil), WithLogger(nil),
	}
	for i, opt := range bad {
		if _, err := Resolve(t.Context(), "localhost:1/x:y", opt); err == nil || errors.Is(err, ErrUnavailable) {
			t.Errorf("option %d: got %v, want a validation error", i, err)
		}
	}
	if _, err := makeOptions([]Option{WithBackoff(2, 1)}); err == nil {
		t.Error("min backoff above max accepted")
	}
}

func TestPlainHTTP(t *testing.T) {
	for reg, want := range map[string]bool{
		"localhost:5000": true, "localhost": true, "127.0.0.1:5000": true, "127.1.2.3": true,
		"[::1]:5000": true, "registry.example.com": false, "10.0.0.1:5000": false, "localhost.example.com": false,
	} {
		if got := isLoopback(reg); got != want {
			t.Errorf("isLoopback(%q) = %v", reg, got)
		}
	}
	for _, tt := range []struct {
		ref      string
		insecure bool
		scheme   string
	}{
		{"registry.example.com/x:y", false, "https"},
		{"registry.example.com/x:y", true, "http"},
		{"[::1]:5000/x:y", false, "http"},
	} {
		r, err := parseReference(tt.ref, tt.insecure)
		if err != nil || r.Context().Scheme() != tt.scheme {
			t.Errorf("parseReference(%q, %v): scheme %v, %v; want %s", tt.ref, tt.insecure, r, err, tt.scheme)
		}
	}
}

// mapStore is a Store in memory that, like the real one, keeps only bytes
// matching their digest.
type mapStore struct {
	mu sync.Mutex
	m  map[digest.Digest][]byte
}

func (s *mapStore) Get(d digest.Digest) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.m[d]
	return b, ok
}

func (s *mapStore) Put(d digest.Digest, data []byte) {
	if d.Algorithm().FromBytes(data) != d {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[d] = data
}

// countRequests counts every request the registry receives.
type countRequests struct {
	n    atomic.Int64
	next http.Handler
}

func (c *countRequests) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.n.Add(1)
	c.next.ServeHTTP(w, r)
}

// TestResolveFromStore: with a store, an image named by digest (here an
// index's digest) resolves a second time with no request at all, and its
// blobs still read (authenticating on the first read); a tag still asks
// the registry.
func TestResolveFromStore(t *testing.T) {
	counter := &countRequests{}
	host := newRegistry(t, func(next http.Handler) http.Handler { counter.next = next; return counter })
	ref := host + "/test/multi:latest"
	hostImg, _ := pushIndex(t, ref)
	store := &mapStore{m: map[digest.Digest][]byte{}}
	first := resolve(t, ref, WithStore(store))
	byDigest := host + "/test/multi@" + mustIndexDigest(t, ref)
	resolve(t, byDigest, WithStore(store))
	before := counter.n.Load()
	again := resolve(t, byDigest, WithStore(store))
	if n := counter.n.Load() - before; n != 0 || again.Digest() != first.Digest() {
		t.Fatalf("second resolve by digest: %d requests, image %s; want 0, %s", n, again.Digest(), first.Digest())
	}
	if string(again.RawConfig()) != string(first.RawConfig()) {
		t.Error("config from the store differs")
	}
	want := layerBytes(t, hostImg)
	b := firstLayer(t, again)
	checkBlob(t, b, want[b.Digest()], 1024)
	before = counter.n.Load()
	resolve(t, ref, WithStore(store))
	if counter.n.Load() == before {
		t.Error("a tag resolved with no request: it may have moved")
	}
}

func mustIndexDigest(t *testing.T, ref string) string {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := ggcr.Head(r)
	if err != nil {
		t.Fatal(err)
	}
	return desc.Digest.String()
}

// TestStoredImageUnauthorized: an image resolved from the store on a
// registry that refuses the credentials fails its first blob read with
// ErrUnauthorized at once, not after the retry budget.
func TestStoredImageUnauthorized(t *testing.T) {
	host := newRegistry(t, basicAuth)
	ref := host + "/test/private:v1"
	img, _ := random.Image(2048, 1)
	r, _ := name.ParseReference(ref)
	good := staticKeychain{Username: "user", Password: "secret"}
	if err := ggcr.Write(r, img, ggcr.WithContext(t.Context()), ggcr.WithAuth(&authn.Basic{Username: good.Username, Password: good.Password})); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	byDigest := host + "/test/private@" + d.String()
	store := &mapStore{m: map[digest.Digest][]byte{}}
	resolve(t, byDigest, WithKeychain(good), WithStore(store))
	stored := resolve(t, byDigest, WithKeychain(staticKeychain{}), WithStore(store))
	start := time.Now()
	_, err := firstLayer(t, stored).ReadAt(t.Context(), make([]byte, 10), 0)
	if !errors.Is(err, ErrUnauthorized) || time.Since(start) > 5*time.Second {
		t.Errorf("read without credentials: %v after %v; want ErrUnauthorized at once", err, time.Since(start))
	}
}
