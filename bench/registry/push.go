package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/stratafs/strata/lazy/convert"
)

// Ref returns the full reference of repoTag ("debian-python:gzip") in
// this registry ("127.0.0.1:PORT/debian-python:gzip").
func (r *Registry) Ref(repoTag string) string { return r.Host + "/" + repoTag }

// Push copies an image from an OCI layout to ref and returns its manifest
// digest. layout is "oci:PATH:TAG", "oci:PATH" or a plain PATH (a layout
// holding one image). ref is "repo:tag" in this registry, or a full
// reference; either way it is reached over plain HTTP. Blobs the registry
// already has are not sent again.
func (r *Registry) Push(ctx context.Context, layout, ref string) (v1.Hash, error) {
	if r.exitedEarly() {
		return v1.Hash{}, fmt.Errorf("registry: push %s: %w", ref, ErrStopped)
	}
	if !strings.HasPrefix(layout, "oci:") {
		layout = "oci:" + layout
	}
	loc, err := convert.ParseLocation(layout, false)
	if err != nil {
		return v1.Hash{}, err
	}
	img, err := convert.ReadImage(ctx, loc, v1.Platform{OS: "linux", Architecture: runtime.GOARCH})
	if err != nil {
		return v1.Hash{}, err
	}
	dst, err := r.parseRef(ref)
	if err != nil {
		return v1.Hash{}, err
	}
	if err := remote.Write(dst, img, remote.WithContext(ctx)); err != nil {
		return v1.Hash{}, fmt.Errorf("registry: push %s to %s: %w", layout, dst, err)
	}
	return img.Digest()
}

// parseRef reads ref, prefixing this registry's host to a bare
// "repo:tag" (one whose first component is not a host).
func (r *Registry) parseRef(ref string) (name.Reference, error) {
	first, _, found := strings.Cut(ref, "/")
	if !found || !strings.ContainsAny(first, ".:") && first != "localhost" {
		ref = r.Ref(ref)
	}
	n, err := name.ParseReference(ref, name.Insecure, name.StrictValidation)
	if err != nil {
		return nil, fmt.Errorf("registry: reference %q: %w", ref, err)
	}
	return n, nil
}

// Catalog returns the repositories in the registry (GET /v2/_catalog).
func (r *Registry) Catalog(ctx context.Context) ([]string, error) {
	var body struct {
		Repositories []string `json:"repositories"`
	}
	err := r.getJSON(ctx, "/v2/_catalog?n=1000", &body)
	return body.Repositories, err
}

// Tags returns a repository's tags (GET /v2/REPO/tags/list).
func (r *Registry) Tags(ctx context.Context, repo string) ([]string, error) {
	var body struct {
		Tags []string `json:"tags"`
	}
	err := r.getJSON(ctx, "/v2/"+repo+"/tags/list", &body)
	return body.Tags, err
}

func (r *Registry) getJSON(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.URL+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("registry: GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("registry: GET %s: %s: %s", path, resp.Status, b)
	}
	return json.Unmarshal(b, v)
}
