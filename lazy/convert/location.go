package convert

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/match"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// refNameAnnotation is the OCI layout's tag: the index.json annotation that
// names a manifest (what skopeo's oci:PATH:TAG reads and writes).
const refNameAnnotation = "org.opencontainers.image.ref.name"

// Location is where an image is read or written: a registry reference, or
// an OCI image layout directory with an optional tag.
type Location struct {
	Ref    name.Reference // nil for a layout
	Layout string         // the layout directory
	Tag    string         // the layout's ref.name; "" for none
	// Insecure allows plain HTTP and unverified TLS for a registry.
	// Loopback registries (localhost, 127.0.0.1, ::1) get plain HTTP anyway.
	Insecure bool
}

// ParseLocation reads "oci:PATH[:TAG]" as a layout and anything else as a
// registry reference ("registry/repo:tag", "registry/repo@sha256:…").
func ParseLocation(s string, insecure bool) (Location, error) {
	if rest, ok := strings.CutPrefix(s, "oci:"); ok {
		loc := Location{Layout: rest}
		if i := strings.LastIndexByte(rest, ':'); i > strings.LastIndexByte(rest, '/') {
			loc.Layout, loc.Tag = rest[:i], rest[i+1:]
		}
		if loc.Layout == "" {
			return Location{}, fmt.Errorf("convert: %w %q: empty layout path", ErrLocation, s)
		}
		return loc, nil
	}
	var nopts []name.Option
	if insecure || isLoopback(s) {
		nopts = append(nopts, name.Insecure)
	}
	r, err := name.ParseReference(s, nopts...)
	if err != nil {
		return Location{}, fmt.Errorf("convert: %w %q: %v", ErrLocation, s, err)
	}
	return Location{Ref: r, Insecure: insecure}, nil
}

func (l Location) String() string {
	if l.Ref != nil {
		return l.Ref.String()
	}
	if l.Tag != "" {
		return "oci:" + l.Layout + ":" + l.Tag
	}
	return "oci:" + l.Layout
}

func isLoopback(ref string) bool {
	reg, _, _ := strings.Cut(ref, "/")
	host := reg
	if h, _, err := net.SplitHostPort(reg); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

// ReadImage opens the image at loc. An index (in a registry or a layout)
// resolves to its image for platform.
func ReadImage(ctx context.Context, loc Location, platform v1.Platform) (v1.Image, error) {
	if loc.Ref != nil {
		img, err := remote.Image(loc.Ref, loc.remoteOptions(ctx, remote.WithPlatform(platform))...)
		if err != nil {
			return nil, fmt.Errorf("convert: read %s: %w", loc, err)
		}
		return img, nil
	}
	img, err := readLayout(loc, platform)
	if err != nil {
		return nil, fmt.Errorf("convert: read %s: %w", loc, err)
	}
	return img, nil
}

func readLayout(loc Location, platform v1.Platform) (v1.Image, error) {
	idx, err := layout.ImageIndexFromPath(loc.Layout)
	if err != nil {
		return nil, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var found []v1.Descriptor
	for _, d := range im.Manifests {
		if loc.Tag == "" || d.Annotations[refNameAnnotation] == loc.Tag {
			found = append(found, d)
		}
	}
	switch {
	case len(found) == 0:
		return nil, fmt.Errorf("%w tagged %q", ErrNoImage, loc.Tag)
	case len(found) > 1:
		return nil, fmt.Errorf("%w: %d images and no tag; name one as oci:PATH:TAG", ErrNoImage, len(found))
	}
	d := found[0]
	if !d.MediaType.IsIndex() {
		return idx.Image(d.Digest)
	}
	child, err := idx.ImageIndex(d.Digest)
	if err != nil {
		return nil, err
	}
	return pickPlatform(child, platform)
}

func pickPlatform(idx v1.ImageIndex, platform v1.Platform) (v1.Image, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, d := range im.Manifests {
		if d.MediaType.IsImage() && d.Platform != nil && d.Platform.Satisfies(platform) {
			return idx.Image(d.Digest)
		}
	}
	return nil, fmt.Errorf("%w for platform %s", ErrNoImage, platform)
}

// WriteImage writes img to loc and returns its manifest digest. A layout
// is created if missing; an image already tagged loc.Tag there is
// replaced.
func WriteImage(ctx context.Context, loc Location, img v1.Image) (v1.Hash, error) {
	d, err := img.Digest()
	if err != nil {
		return v1.Hash{}, err
	}
	if loc.Ref != nil {
		err = remote.Write(loc.Ref, img, loc.remoteOptions(ctx)...)
	} else {
		err = writeLayout(loc, img)
	}
	if err != nil {
		return v1.Hash{}, fmt.Errorf("convert: write %s: %w", loc, err)
	}
	return d, nil
}

func writeLayout(loc Location, img v1.Image) error {
	p, err := layout.FromPath(loc.Layout)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(loc.Layout, 0o755); err != nil {
			return err
		}
		p, err = layout.Write(loc.Layout, empty.Index)
	}
	if err != nil {
		return err
	}
	if loc.Tag == "" {
		return p.AppendImage(img)
	}
	ann := map[string]string{refNameAnnotation: loc.Tag}
	return p.ReplaceImage(img, match.Annotation(refNameAnnotation, loc.Tag), layout.WithAnnotations(ann))
}

// remoteOptions: credentials from the docker keychain, and for Insecure a
// transport that skips TLS verification.
func (l Location) remoteOptions(ctx context.Context, extra ...remote.Option) []remote.Option {
	opts := append([]remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}, extra...)
	if l.Insecure {
		t := remote.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the user asked for --insecure
		opts = append(opts, remote.WithTransport(t))
	}
	return opts
}
