package images

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Sentinel errors, tested with errors.Is.
var (
	// ErrBuild: a build step failed or left the rootfs in a state that
	// cannot be packed (a mount, a socket, a daemon still running).
	ErrBuild = errors.New("image build failed")
	// ErrNoTool: a host tool the build needs is missing and could not be
	// installed.
	ErrNoTool = errors.New("missing tool")
)

// DefaultCacheDir is where images are kept between runs.
const DefaultCacheDir = "/var/cache/strata-bench"

// Format is how an image's layers are compressed.
type Format string

// The four formats every image is written in.
const (
	Gzip        Format = "gzip"         // application/vnd.oci.image.layer.v1.tar+gzip
	Zstd        Format = "zstd"         // application/vnd.oci.image.layer.v1.tar+zstd, one stream
	ZstdChunked Format = "zstd:chunked" // zstd frames per chunk + TOC (lazy/convert)
	EStargz     Format = "estargz"      // gzip members per chunk + TOC (lazy/convert)
)

// Formats lists the formats in the order they are built.
var Formats = []Format{Gzip, Zstd, ZstdChunked, EStargz}

// Tag is the format's tag in an image's layout: "zstd:chunked" becomes
// "zstd-chunked", since a tag holds no ':'.
func (f Format) Tag() string { return strings.ReplaceAll(string(f), ":", "-") }

// Options configure Build and BuildQuick.
type Options struct {
	// CacheDir holds the built images; default DefaultCacheDir.
	CacheDir string
	// Progress receives one line per build step; nil discards them.
	Progress io.Writer
	// Mirror is the Debian mirror for debootstrap and apt in the chroot;
	// default: the one in the host's apt sources.
	Mirror string
	// Rebuild ignores cached images.
	Rebuild bool
}

// Set is the images Build or BuildQuick made or found.
type Set struct {
	CacheDir string   `json:"cache_dir"`
	Images   []*Image `json:"images"`
}

// Image returns the image called name, or nil.
func (s *Set) Image(name string) *Image {
	for _, im := range s.Images {
		if im.Name == name {
			return im
		}
	}
	return nil
}

// Image is one image, written in every format to one OCI layout.
type Image struct {
	Name   string `json:"name"`
	Recipe string `json:"recipe"` // hash of what built it; a change rebuilds
	Layout string `json:"layout"` // OCI image layout directory, one tag per format
	// Tree is the rootfs the layers were cut from, kept by BuildQuick only
	// (tests compare extracted layers against it); "" otherwise.
	Tree string `json:"tree,omitempty"`
	// The unpacked image: entries (directories included), regular files
	// (each hard link counted) and the bytes of distinct regular files.
	Entries       int         `json:"entries"`
	Files         int         `json:"files"`
	UnpackedBytes int64       `json:"unpacked_bytes"`
	Layers        []LayerInfo `json:"layers"`
	Variants      []Variant   `json:"variants"`
	BuiltAt       time.Time   `json:"built_at"`
	BuildSeconds  float64     `json:"build_seconds"`
	// StepSeconds is each build step's time, packing and conversion
	// included under "pack:FORMAT".
	StepSeconds map[string]float64 `json:"step_seconds"`
}

// Variant is the image in one format.
type Variant struct {
	Format Format `json:"format"`
	Tag    string `json:"tag"`
	// Location is "oci:LAYOUT:TAG", as lazy/convert and skopeo read it.
	Location        string `json:"location"`
	Digest          string `json:"digest"` // manifest digest
	CompressedBytes int64  `json:"compressed_bytes"`
	Layers          int    `json:"layers"`
}

// Variant returns the image's variant in format f, or nil.
func (im *Image) Variant(f Format) *Variant {
	for i := range im.Variants {
		if im.Variants[i].Format == f {
			return &im.Variants[i]
		}
	}
	return nil
}

// Build makes, or finds in the cache, the suite's two realistic images:
// "debian-python" (debootstrap minbase, python3, an app) and
// "debian-large" (debian-python plus a compiler toolchain and large data
// files, over 1 GB and 50,000 files). The first build takes minutes and
// needs the Debian mirror; later calls only read the cache.
func Build(ctx context.Context, o Options) (*Set, error) {
	return buildSet(ctx, o, debianRecipes())
}

// BuildQuick makes, or finds in the cache, "quick": a small image of
// python3 from the host's own files (no download, seconds to build), in
// the same four formats, for smoke tests. Its rootfs is kept (Image.Tree).
func BuildQuick(ctx context.Context, o Options) (*Set, error) {
	r, err := quickRecipe()
	if err != nil {
		return nil, err
	}
	return buildSet(ctx, o, []*recipe{r})
}

func buildSet(ctx context.Context, o Options, recipes []*recipe) (*Set, error) {
	if o.CacheDir == "" {
		o.CacheDir = DefaultCacheDir
	}
	dir, err := filepath.Abs(o.CacheDir)
	if err != nil {
		return nil, err
	}
	o.CacheDir = dir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	set := &Set{CacheDir: dir}
	for _, r := range recipes {
		var parent *Image
		if r.parent != "" {
			if parent = set.Image(r.parent); parent == nil {
				return nil, fmt.Errorf("images: recipe %s: parent %s not built first", r.name, r.parent)
			}
		}
		im, err := buildImage(ctx, &o, r, parent)
		if err != nil {
			return nil, fmt.Errorf("images: %s: %w", r.name, err)
		}
		set.Images = append(set.Images, im)
	}
	return set, nil
}

// lockDir serializes builds sharing a cache directory (two benchmark runs,
// or a test and a benchmark).
func lockDir(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return func() { f.Close() }, nil
}

// logger writes progress lines.
type logger struct{ w io.Writer }

func (l logger) printf(format string, args ...any) {
	if l.w != nil {
		fmt.Fprintf(l.w, "%s images: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
}
