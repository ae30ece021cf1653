package main

import (
	"context"
	_ "embed"
	"fmt"
	"github.com/stratafs/strata/layer"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
)

//go:embed layers.sh
var layersScript string

// layerNames are the image's layers, lowest first.
var layerNames = []string{"base", "bulk", "app"}

// imageVersion changes when layers.sh or the packing changes, so a stale
// cache is rebuilt rather than silently measured.
const imageVersion = "coldstart-image-v2"

// ensureLayers builds the layer directories and their .tar.gz blobs once.
func ensureLayers(ctx context.Context, dir string, rebuild bool) error {
	stamp := filepath.Join(dir, "VERSION")
	if b, err := os.ReadFile(stamp); err == nil && string(b) == imageVersion && !rebuild {
		progress("image layers cached in %s", dir)
		return nil
	}
	progress("building image layers in %s (once)", dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	os.Remove(stamp)
	cmd := exec.CommandContext(ctx, "bash", "-c", layersScript, "layers.sh", dir)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("layers.sh: %w", err)
	}
	for _, n := range layerNames {
		if err := packLayer(filepath.Join(dir, n), filepath.Join(dir, n+".tar.gz")); err != nil {
			return fmt.Errorf("pack %s: %w", n, err)
		}
	}
	return os.WriteFile(stamp, []byte(imageVersion), 0o644)
}

// packLayer writes dir as a gzip tar, the ordinary form of an image layer.
func packLayer(dir, out string) error {
	f, err := os.Create(out + ".tmp")
	if err != nil {
		return err
	}
	defer f.Close()
	zw, _ := gzip.NewWriterLevel(f, gzip.DefaultCompression)
	if err := layer.WriteTar(zw, dir); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(out+".tmp", out)
}

// push writes the cached blobs to ref as an OCI image.
func push(ctx context.Context, dir, ref string) error {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.ConfigFile(img, &v1.ConfigFile{OS: "linux", Architecture: runtime.GOARCH,
		RootFS: v1.RootFS{Type: "layers"}, Config: v1.Config{Cmd: []string{"/usr/bin/python3"}}})
	if err != nil {
		return err
	}
	for _, n := range layerNames {
		l, err := tarball.LayerFromFile(filepath.Join(dir, n+".tar.gz"), tarball.WithMediaType(types.OCILayer))
		if err != nil {
			return err
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			return err
		}
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		return err
	}
	return remote.Write(r, img, remote.WithContext(ctx))
}

// layerSizes returns ref's compressed layer sizes and media types.
func layerSizes(ctx context.Context, ref string) ([]v1.Descriptor, int64, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, 0, err
	}
	img, err := remote.Image(r, remote.WithContext(ctx))
	if err != nil {
		return nil, 0, err
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, 0, err
	}
	var total int64
	for _, l := range m.Layers {
		total += l.Size
	}
	return m.Layers, total, nil
}

// dirSize is the bytes of regular files under dir, for the setup notes.
func dirSize(dir string) (int64, int) {
	var total int64
	n := 0
	filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		n++
		if e.Type().IsRegular() {
			if fi, err := e.Info(); err == nil {
				total += fi.Size()
			}
		}
		return nil
	})
	return total, n
}
