package remote

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	digest "github.com/opencontainers/go-digest"
	"net"
	"net/http"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	ggcr "github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// maxIndexDepth bounds indexes nested in indexes, so a looping registry
// cannot keep Resolve busy.
const maxIndexDepth = 4

// Resolve fetches the manifest that ref names (a tag or a digest), follows
// an image index to the image for the wanted platform, and fetches the
// image's config. The returned Image is pinned to the manifest's digest:
// moving the tag later changes nothing for it. A tag is asked of the
// registry unless WithRefs has a record of it and a pull policy that lets
// the record answer. ctx bounds Resolve only.
func Resolve(ctx context.Context, ref string, opts ...Option) (*Image, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	r, err := parseReference(ref, o.insecure)
	if err != nil {
		return nil, err
	}
	asked := r // the reference as given, before a recorded digest stands in for it
	if r, err = recordedDigest(r, o); err != nil {
		return nil, fmt.Errorf("remote: %s: %w", ref, err)
	}
	base := baseTransport(o)
	desc, err := resolveImage(ctx, r, base, o)
	if errors.Is(err, ErrNotFound) && r != asked && o.pull == PullMissing {
		// The recorded image is gone from the registry: ask what the tag
		// points to now.
		desc, err = resolveImage(ctx, asked, base, o)
	}
	if err != nil {
		return nil, err
	}
	c := newClient(r.Context(), base, o)
	img, err := newImage(r.Context().Digest(desc.Digest.String()), desc, c)
	if err != nil {
		return nil, fmt.Errorf("remote: %s: %w", ref, err)
	}
	if err := img.fetchConfig(ctx); err != nil {
		return nil, err
	}
	return img, nil
}

// recordedDigest returns, for a tag that o's refs have a digest of and
// that o's pull policy lets them answer, the reference by that digest;
// otherwise r itself.
func recordedDigest(r name.Reference, o *options) (name.Reference, error) {
	tag, ok := r.(name.Tag)
	if !ok || o.refs == nil || o.pull == PullAlways {
		return r, nil
	}
	if d, ok := o.refs.Ref(tag.Name()); ok {
		return tag.Context().Digest(d.String()), nil
	}
	if o.pull == PullNever {
		return nil, ErrNotPulled
	}
	return r, nil
}

// parseReference allows plain HTTP for --insecure and for loopback
// registries, where TLS is rarely set up and never needed.
func parseReference(ref string, insecure bool) (name.Reference, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("remote: %q: %w: %w", ref, ErrInvalidReference, err)
	}
	if !insecure && !isLoopback(r.Context().RegistryStr()) {
		return r, nil
	}
	return name.ParseReference(ref, name.Insecure)
}

func isLoopback(registry string) bool {
	host := registry
	if h, _, err := net.SplitHostPort(registry); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func baseTransport(o *options) http.RoundTripper {
	if o.transport != nil {
		return o.transport
	}
	t, ok := ggcr.DefaultTransport.(*http.Transport)
	if !ok {
		t = http.DefaultTransport.(*http.Transport)
	}
	t = t.Clone()
	// One connection per request in flight, kept for the next range.
	t.MaxIdleConnsPerHost = max(t.MaxIdleConnsPerHost, o.maxInFlight)
	if o.insecure {
		t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the user asked for --insecure
	}
	return t
}

// resolveImage fetches r's manifest and, while it is an index, the child
// for the wanted platform.
func resolveImage(ctx context.Context, r name.Reference, base http.RoundTripper, o *options) (*ggcr.Descriptor, error) {
	platform := hostPlatform()
	if o.platform != nil {
		platform = *o.platform
	}
	ropts := []ggcr.Option{
		ggcr.WithContext(ctx),
		ggcr.WithAuthFromKeychain(o.keychain),
		ggcr.WithTransport(base),
		ggcr.WithPlatform(platform),
	}
	for range maxIndexDepth {
		desc, err := getManifest(r, ropts, o.store)
		if err != nil {
			return nil, err
		}
		if tag, ok := r.(name.Tag); ok && o.refs != nil {
			if err := o.refs.SetRef(tag.Name(), digest.Digest(desc.Digest.String())); err != nil {
				o.logger.Warn("cannot record the tag's digest", "tag", tag.Name(), "err", err)
			}
		}
		index, err := isIndex(desc.MediaType, desc.Manifest)
		if err != nil {
			return nil, fmt.Errorf("remote: %s: %w", r, err)
		}
		if !index {
			return desc, nil
		}
		child, err := pickPlatform(desc.Manifest, platform)
		if err != nil {
			return nil, fmt.Errorf("remote: %s: %w", r, err)
		}
		r = r.Context().Digest(child.String())
	}
	return nil, fmt.Errorf("remote: %s: %w: indexes nested deeper than %d", r, ErrUnsupported, maxIndexDepth)
}

// getManifest returns the manifest r names: from the store when r is a
// digest it holds (the store checks the bytes against it), else from the
// registry, keeping it in the store.
func getManifest(r name.Reference, ropts []ggcr.Option, store Store) (*ggcr.Descriptor, error) {
	if d, ok := r.(name.Digest); ok && store != nil {
		if raw, ok := store.Get(digest.Digest(d.DigestStr())); ok {
			h, err := v1.NewHash(d.DigestStr())
			if err != nil {
				return nil, fmt.Errorf("remote: %s: %w: %w", r, ErrInvalidReference, err)
			}
			var probe struct {
				MediaType types.MediaType `json:"mediaType"`
			}
			json.Unmarshal(raw, &probe) // isIndex judges a manifest without one
			return &ggcr.Descriptor{Descriptor: v1.Descriptor{MediaType: probe.MediaType, Digest: h, Size: int64(len(raw))}, Manifest: raw}, nil
		}
	}
	desc, err := ggcr.Get(r, ropts...)
	if err != nil {
		return nil, registryError(r.String(), err)
	}
	if store != nil {
		store.Put(digest.Digest(desc.Digest.String()), desc.Manifest)
	}
	return desc, nil
}

// isIndex tells an index from an image manifest. The Content-Type decides
// when it names a known kind; otherwise (a registry that stored a manifest
// without its mediaType field, or serves application/json) the body does.
func isIndex(mt types.MediaType, raw []byte) (bool, error) {
	switch {
	case mt.IsSchema1():
		return false, fmt.Errorf("%w: schema 1 (%s)", ErrUnsupported, mt)
	case mt.IsIndex():
		return true, nil
	case mt.IsImage():
		return false, nil
	}
	var probe struct {
		MediaType types.MediaType `json:"mediaType"`
		Manifests json.RawMessage `json:"manifests"`
		Config    json.RawMessage `json:"config"`
	}
	if err := json.Unmarshal(raw, &probe); err != nil {
		return false, fmt.Errorf("%w: %v", ErrUnsupported, err)
	}
	switch {
	case probe.MediaType.IsIndex(), probe.MediaType == "" && probe.Manifests != nil:
		return true, nil
	case probe.MediaType.IsImage(), probe.MediaType == "" && probe.Config != nil:
		return false, nil
	}
	return false, fmt.Errorf("%w: media type %q", ErrUnsupported, cmpOr(probe.MediaType, mt))
}

func cmpOr(a, b types.MediaType) types.MediaType {
	if a != "" {
		return a
	}
	return b
}

// pickPlatform returns the first child of an index that satisfies want. A
// child without a platform is taken as linux/amd64, as Docker does.
func pickPlatform(raw []byte, want v1.Platform) (v1.Hash, error) {
	index, err := v1.ParseIndexManifest(bytes.NewReader(raw))
	if err != nil {
		return v1.Hash{}, fmt.Errorf("%w: index: %v", ErrUnsupported, err)
	}
	for _, m := range index.Manifests {
		have := v1.Platform{OS: "linux", Architecture: "amd64"}
		if m.Platform != nil {
			have = *m.Platform
		}
		if have.Satisfies(want) {
			return m.Digest, nil
		}
	}
	return v1.Hash{}, fmt.Errorf("%w %s", ErrNoPlatform, want.String())
}

// newClient makes the client the image's blobs share. It authenticates
// for pulling from repo on the first blob request, not here: an image
// whose manifest, config and TOCs come from the store then mounts with no
// request at all. The bearer token is fetched once and refreshed by
// go-containerregistry's transport when the registry asks again.
func newClient(repo name.Repository, base http.RoundTripper, o *options) *client {
	return &client{
		base: base,
		repo: repo,
		sem:  registrySlots(repo.RegistryStr(), o.maxInFlight),
		opts: o,
	}
}

// httpClient returns the authenticated HTTP client, making it on first
// use. A failure (the registry down, no credentials) is not kept: the next
// request tries again.
func (c *client) httpClient(ctx context.Context) (*http.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.http != nil {
		return c.http, nil
	}
	auth, err := authn.Resolve(ctx, c.opts.keychain, c.repo)
	if err != nil {
		return nil, fmt.Errorf("%w: keychain: %w", ErrUnauthorized, err)
	}
	scopes := []string{c.repo.Scope(transport.PullScope)}
	rt, err := transport.NewWithContext(ctx, c.repo.Registry, auth, c.base, scopes)
	if err != nil {
		return nil, registryError(c.repo.String(), err)
	}
	c.http = &http.Client{Transport: rt}
	return c.http, nil
}

// slotsKey names one registry's in-flight bound: several images of the same
// registry in one process (a node mounting several containers) share it.
type slotsKey struct {
	registry string
	n        int
}

var (
	slotsMu sync.Mutex
	slots   = map[slotsKey]chan struct{}{}
)

// registrySlots returns the semaphore bounding the requests this process
// has in flight to a registry. Images resolved with different bounds get
// different semaphores, so an explicit WithMaxInFlight is always honoured
// for that image's own requests.
func registrySlots(registry string, n int) chan struct{} {
	slotsMu.Lock()
	defer slotsMu.Unlock()
	k := slotsKey{registry, n}
	if s, ok := slots[k]; ok {
		return s
	}
	s := make(chan struct{}, n)
	slots[k] = s
	return s
}

// fetchConfig reads the config through the image's own blob reader (so it
// gets the same retries) and checks it against its digest when the digest
// is a sha256 one (the only kind registries use for configs today).
func (img *Image) fetchConfig(ctx context.Context) error {
	store := img.c.opts.store
	if store != nil {
		if raw, ok := store.Get(digest.Digest(img.config.Digest)); ok {
			img.rawConfig = raw
			return nil
		}
	}
	b := img.Blob(img.config)
	buf := make([]byte, b.Size())
	if _, err := b.ReadAt(ctx, buf, 0); err != nil {
		return err
	}
	sum := sha256.Sum256(buf)
	got := "sha256:" + hex.EncodeToString(sum[:])
	if strings.HasPrefix(img.config.Digest, "sha256:") && got != img.config.Digest {
		return fmt.Errorf("remote: %s: config: %w: digest %s, want %s", img.ref, ErrBadResponse, got, img.config.Digest)
	}
	img.rawConfig = buf
	if store != nil {
		store.Put(digest.Digest(img.config.Digest), buf)
	}
	return nil
}
