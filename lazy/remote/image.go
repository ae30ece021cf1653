package remote

import (
	"bytes"
	"fmt"
	"maps"
	"net/http"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	ggcr "github.com/google/go-containerregistry/pkg/v1/remote"
)

// Descriptor names one blob of an image, as its manifest does.
type Descriptor struct {
	MediaType   string
	Digest      string // "algorithm:hex", e.g. "sha256:…"
	Size        int64
	Annotations map[string]string // nil when the manifest has none
}

// Image is one resolved image manifest: its layers in order (base first),
// its config, and readers for its blobs. It holds no network state but a
// shared, authenticated HTTP client, and is safe for concurrent use.
type Image struct {
	ref       name.Digest // repository@manifest-digest
	mediaType string
	manifest  []byte
	layers    []Descriptor
	config    Descriptor
	rawConfig []byte // set by Resolve, then read-only
	c         *client

	mu    sync.Mutex       // guards blobs
	blobs map[string]*Blob // by digest, so each blob has one set of Stats
}

func newImage(ref name.Digest, desc *ggcr.Descriptor, c *client) (*Image, error) {
	m, err := v1.ParseManifest(bytes.NewReader(desc.Manifest))
	if err != nil {
		return nil, fmt.Errorf("%w: manifest: %v", ErrUnsupported, err)
	}
	img := &Image{
		ref:       ref,
		mediaType: string(desc.MediaType),
		manifest:  desc.Manifest,
		config:    descriptor(m.Config),
		c:         c,
		blobs:     map[string]*Blob{},
	}
	for _, l := range m.Layers {
		img.layers = append(img.layers, descriptor(l))
	}
	return img, nil
}

func descriptor(d v1.Descriptor) Descriptor {
	return Descriptor{
		MediaType:   string(d.MediaType),
		Digest:      d.Digest.String(),
		Size:        d.Size,
		Annotations: maps.Clone(d.Annotations),
	}
}

// Name is the image pinned by digest: "registry/repository@sha256:…".
func (img *Image) Name() string { return img.ref.String() }

// Digest is the image manifest's digest (not an index's).
func (img *Image) Digest() string { return img.ref.DigestStr() }

// MediaType is the manifest's media type as the registry served it; it may
// be empty or generic for registries that do not keep it.
func (img *Image) MediaType() string { return img.mediaType }

// RawManifest returns the manifest's bytes as served; do not modify them.
func (img *Image) RawManifest() []byte { return img.manifest }

// Layers returns the layer descriptors, base layer first.
func (img *Image) Layers() []Descriptor {
	out := make([]Descriptor, len(img.layers))
	for i, l := range img.layers {
		out[i] = l
		out[i].Annotations = maps.Clone(l.Annotations)
	}
	return out
}

// Config returns the config's descriptor.
func (img *Image) Config() Descriptor { return img.config }

// RawConfig returns the config's bytes, verified against its digest; do
// not modify them.
func (img *Image) RawConfig() []byte { return img.rawConfig }

// ConfigFile parses the config as an OCI/Docker image config.
func (img *Image) ConfigFile() (*v1.ConfigFile, error) {
	cf, err := v1.ParseConfigFile(bytes.NewReader(img.rawConfig))
	if err != nil {
		return nil, fmt.Errorf("remote: %s: config: %w", img.ref, err)
	}
	return cf, nil
}

// Layer returns the reader of layer i (0 is the base layer).
func (img *Image) Layer(i int) (*Blob, error) {
	if i < 0 || i >= len(img.layers) {
		return nil, fmt.Errorf("remote: %s: layer %d of %d: %w", img.ref, i, len(img.layers), ErrNotFound)
	}
	return img.Blob(img.layers[i]), nil
}

// Blob returns the reader of any blob of the image's repository. Asking
// twice for one digest gives the same *Blob, so its Stats add up; d.Size
// must be the blob's size (a manifest's word is trusted for it).
func (img *Image) Blob(d Descriptor) *Blob {
	img.mu.Lock()
	defer img.mu.Unlock()
	if b, ok := img.blobs[d.Digest]; ok {
		return b
	}
	b := &Blob{c: img.c, digest: d.Digest, size: d.Size}
	img.blobs[d.Digest] = b
	return b
}

// CloseIdleConnections closes the connections kept for the next read. Reads
// may continue afterwards; they open new ones.
func (img *Image) CloseIdleConnections() {
	if t, ok := img.c.base.(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
}

// client is what the blobs of one image share: the authenticated HTTP
// client for its registry and the bound on requests in flight to it.
type client struct {
	mu   sync.Mutex        // guards http
	http *http.Client      // authenticated; nil until the first request (see httpClient)
	base http.RoundTripper // under authentication, for CloseIdleConnections
	repo name.Repository
	sem  chan struct{} // one token per request in flight
	opts *options
}

func (c *client) blobURL(digest string) string {
	return fmt.Sprintf("%s://%s/v2/%s/blobs/%s", c.repo.Scheme(), c.repo.RegistryStr(), c.repo.RepositoryStr(), digest)
}
