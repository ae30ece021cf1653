package snapshotter

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/stratafs/strata/cache"
	"github.com/stratafs/strata/layer"
	"github.com/stratafs/strata/lazy"
	"github.com/stratafs/strata/lazy/remote"
	"github.com/stratafs/strata/status"
)

// errNotLazy: the layer, or one below it, has no TOC; containerd downloads
// and unpacks it as usual.
var errNotLazy = errors.New("not lazily loadable")

// memoryChunks is the memory kept for hot chunks, in front of the on-disk
// cache, for every image together; memoryQueue how many bytes of chunks
// may wait for the disk (as strata mount keeps them). A detached mount's
// process, which serves one image, keeps detachedMemoryChunks: there is
// one per image in use, and the kernel caches what its mount serves.
const (
	memoryChunks         = 64 << 20
	detachedMemoryChunks = 16 << 20
	memoryQueue          = 16 << 20
)

// images opens the images whose layers the remote snapshots stand for,
// each once, and keeps them open while the snapshotter runs: one image's
// layers back the mounts of all its remote snapshots.
type images struct {
	insecure bool
	// serve: the images' layers are opened, for mounts in this process.
	// Where a process of its own serves each mount (detached mounts), an
	// image is only resolved, for the pull's Prepares.
	serve  bool
	disk   *cache.Store
	tiered *lazy.TieredStore
	// ctx bounds the opening of layers, which outlives the Prepare that
	// starts it; close ends it.
	ctx    context.Context
	cancel context.CancelFunc

	mu   sync.Mutex
	open map[string]*image // by manifest digest
}

// image is one image, resolved on first use; its lazily loadable layers
// are opened (their TOCs fetched and verified) in the background from
// then on, while containerd goes on with the pull and creates the
// container, and the first mount waits for them.
type image struct {
	once      sync.Once
	err       error // resolving
	img       *remote.Image
	lazyCount int // the leading layers that have a TOC

	opened  chan struct{} // closed once the layers are open, or failed to
	openErr error
	lazies  []*lazy.Layer  // base first
	blobs   []*remote.Blob // theirs, for their request counters
}

func newImages(disk *cache.Store, insecure, serve bool, memory int64) *images {
	ctx, cancel := context.WithCancel(context.Background())
	return &images{
		insecure: insecure,
		serve:    serve,
		disk:     disk,
		tiered:   lazy.NewAsyncTieredStore(lazy.NewMemoryStore(memory), disk, memoryQueue),
		ctx:      ctx,
		cancel:   cancel,
		open:     map[string]*image{},
	}
}

// get returns the image that ref (its name) and manifest (its digest)
// name, resolved, its layers being opened. The image is resolved by
// digest: its manifest and config come from the cache when strata has
// seen them.
func (is *images) get(ctx context.Context, ref, manifest string) (*image, error) {
	is.mu.Lock()
	im := is.open[manifest]
	if im == nil {
		im = &image{}
		is.open[manifest] = im
	}
	is.mu.Unlock()
	im.once.Do(func() { im.err = im.load(ctx, is, ref, manifest) })
	if im.err != nil {
		is.forget(manifest, im) // a failure is not kept: the next Prepare tries again
	}
	return im, im.err
}

// forget removes im from the open images, unless another took its place.
func (is *images) forget(manifest string, im *image) {
	is.mu.Lock()
	defer is.mu.Unlock()
	if is.open[manifest] == im {
		delete(is.open, manifest)
	}
}

// load resolves the image and starts opening its layers.
func (im *image) load(ctx context.Context, is *images, ref, manifest string) error {
	byDigest, err := digestRef(ref, manifest)
	if err != nil {
		return err
	}
	im.img, err = remote.Resolve(ctx, byDigest, remote.WithInsecure(is.insecure), remote.WithStore(is.disk))
	if err != nil {
		return err
	}
	var ils []lazy.ImageLayer
	for i, d := range im.img.Layers() {
		if _, err := lazy.TOCDigest(d.Annotations); err != nil {
			break // this layer, and every one above it, is containerd's to unpack
		}
		blob, err := im.img.Layer(i)
		if err != nil {
			return err
		}
		ils = append(ils, lazy.ImageLayer{Digest: d.Digest, Annotations: d.Annotations, Blob: blob})
		im.blobs = append(im.blobs, blob)
	}
	im.lazyCount = len(ils)
	im.opened = make(chan struct{})
	if !is.serve {
		im.openErr = errors.New("snapshotter: the image's layers are served by detached mounts")
		close(im.opened) // no layers: layers fails, closeLayers has none to close
		return nil
	}
	go func() {
		defer close(im.opened)
		im.lazies, im.openErr = lazy.OpenImage(is.ctx, ils, lazy.WithChunkStore(is.tiered), lazy.WithFileStore(is.disk))
		if im.openErr != nil {
			im.openErr = fmt.Errorf("%s: %w", byDigest, im.openErr)
			is.forget(manifest, im) // the next mount tries again
			return
		}
		// As strata mount does: the landmarked files now, then a whole
		// layer once its readers have fetched enough of it.
		for _, l := range im.lazies {
			l.Prefetch(lazy.PrefetchAuto)
		}
	}()
	return nil
}

// layers waits for the image's layers to be open and returns layers 0..n,
// for a merged mount.
func (im *image) layers(ctx context.Context, n int) ([]layer.Layer, error) {
	select {
	case <-im.opened:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if im.openErr != nil {
		return nil, im.openErr
	}
	if n >= len(im.lazies) {
		return nil, fmt.Errorf("layer %d of %s: %w", n, im.img.Name(), errNotLazy)
	}
	out := make([]layer.Layer, n+1)
	for i, l := range im.lazies[:n+1] {
		out[i] = l
	}
	return out, nil
}

// collect reads the counters of layers 0..n, for `strata stat`; the
// layers must be open (layers returned them).
func (im *image) collect(n int, disk *cache.Store) status.Collect {
	return func() ([]status.Layer, *status.Cache) {
		out := make([]status.Layer, n+1)
		for i := range out {
			out[i] = status.LayerOf(im.blobs[i], im.lazies[i], nil)
		}
		return out, status.CacheOf(disk, disk.Dir())
	}
}

// digestRef is ref's repository at the manifest digest.
func digestRef(ref, manifest string) (string, error) {
	if !strings.HasPrefix(manifest, "sha256:") {
		return "", fmt.Errorf("manifest digest %q: want sha256:...", manifest)
	}
	repo := ref
	if i := strings.IndexByte(repo, '@'); i >= 0 {
		repo = repo[:i]
	}
	// A tag follows the last colon after the last slash (a colon before it
	// belongs to the registry's port).
	if i := strings.LastIndexByte(repo, ':'); i > strings.LastIndexByte(repo, '/') {
		repo = repo[:i]
	}
	if repo == "" {
		return "", fmt.Errorf("image reference %q: no repository", ref)
	}
	return repo + "@" + manifest, nil
}

// index returns the position of the layer with this digest among the
// image's lazily loadable layers.
func (im *image) index(layerDigest string) (int, error) {
	for i, d := range im.img.Layers() {
		if d.Digest != layerDigest {
			continue
		}
		if i >= im.lazyCount {
			return 0, fmt.Errorf("layer %d (%s): %w", i, layerDigest, errNotLazy)
		}
		return i, nil
	}
	return 0, fmt.Errorf("layer %s is not in image %s", layerDigest, im.img.Name())
}

// drop closes the image with this manifest digest, if it is open: its
// layers' background work stops, and their trees are freed once no mount
// serves them.
func (is *images) drop(manifest string) {
	is.mu.Lock()
	im := is.open[manifest]
	delete(is.open, manifest)
	is.mu.Unlock()
	if im != nil {
		im.closeLayers()
	}
}

// closeLayers stops the background work of the image's layers, once they
// are open (or failed to).
func (im *image) closeLayers() {
	im.once.Do(func() {}) // a resolve under way finishes first
	if im.opened == nil {
		return // never resolved
	}
	<-im.opened
	for _, l := range im.lazies {
		l.Close()
	}
}

// close stops every image's background work and flushes the chunks still
// queued for the disk.
func (is *images) close() {
	is.cancel() // ends the opening of layers under way
	is.mu.Lock()
	open := is.open
	is.open = map[string]*image{}
	is.mu.Unlock()
	for _, im := range open {
		im.closeLayers()
	}
	is.tiered.Close()
}
