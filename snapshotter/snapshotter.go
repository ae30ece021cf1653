package snapshotter

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/mount"
	"github.com/containerd/containerd/pkg/snapshotters"
	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/containerd/snapshots/overlay"
	"github.com/stratafs/strata/cache"
	"github.com/stratafs/strata/unionfs"
	"golang.org/x/sys/unix"
)

// The labels containerd's unpacker puts on a layer's Prepare: the chain ID
// of the snapshot to commit (containerd's own), and those that
// snapshotters.AppendInfoHandlerWrapper adds.
const labelTarget = "containerd.io/snapshot.ref"

// The labels of a remote snapshot: which image, and which of its layers,
// it stands for.
const (
	labelRemoteRef      = "strata.io/image-ref"
	labelRemoteManifest = "strata.io/manifest-digest"
	labelRemoteLayer    = "strata.io/layer-index"
)

// Options are a Snapshotter's settings.
type Options struct {
	// Root holds the snapshots, their metadata and the mounts of remote
	// snapshots.
	Root string
	// Cache is the chunk cache every image's layers share; the caller
	// opens and closes it.
	Cache *cache.Store
	// Insecure allows plain HTTP to every registry (loopback ones need
	// no permission).
	Insecure bool
	// Logger gets a line per remote snapshot mounted, and per failure no
	// caller sees; nil: the standard logger.
	Logger *log.Logger
	// Detached, if set, makes each remote snapshot's mount a process of
	// its own, which outlives the snapshotter: the command it returns
	// serves spec (with ServeDetached). See detached.go.
	Detached func(spec MountSpec) *exec.Cmd
}

// Snapshotter is containerd's overlay snapshotter with image layers
// mounted lazily (see the package documentation). It is safe for
// concurrent use.
type Snapshotter struct {
	snapshots.Snapshotter // containerd's overlay snapshotter, under Root
	images                *images
	logger                *log.Logger
	lock                  *os.File // holds the root's flock
	root                  string
	detached              func(MountSpec) *exec.Cmd

	mu      sync.Mutex
	remotes map[string]*remoteSnapshot // by snapshot name (chain ID)
	byDir   map[string]*remoteSnapshot // by the snapshot's directory
	pending map[string]*pendingMount   // detached mounts' processes waiting for their directory, by manifest digest
}

// remoteSnapshot is a committed snapshot that stands for layers 0..layer
// of an image, mounted on dir by strata.
type remoteSnapshot struct {
	name, dir     string
	ref, manifest string
	layer         int

	mu         sync.Mutex      // guards srv, stopStatus and detached; held while mounting
	srv        *unionfs.Server // nil until mounted
	stopStatus func()          // ends the mount's status file (see publish)
	detached   bool            // mounted by a process of its own (Options.Detached)
}

var _ snapshots.Snapshotter = (*Snapshotter)(nil)

// New opens the snapshotter at o.Root. Mounts left by an earlier process
// are detached first (their server is gone); the remote snapshots it
// committed are found again from their labels and mounted when next used.
func New(ctx context.Context, o Options) (*Snapshotter, error) {
	if o.Root == "" || o.Cache == nil {
		return nil, errors.New("snapshotter: a root and a cache are required")
	}
	if o.Logger == nil {
		o.Logger = log.Default()
	}
	root, err := filepath.Abs(o.Root)
	if err != nil {
		return nil, err
	}
	lock, err := lockRoot(root)
	if err != nil {
		return nil, err
	}
	if err := detachStale(filepath.Join(root, "snapshots"), o.Detached != nil); err != nil {
		lock.Close()
		return nil, err
	}
	inner, err := overlay.NewSnapshotter(root)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("snapshotter: %w", err)
	}
	s := &Snapshotter{
		Snapshotter: inner,
		lock:        lock,
		root:        root,
		pending:     map[string]*pendingMount{},
		images:      newImages(o.Cache, o.Insecure, o.Detached == nil, memoryChunks),
		detached:    o.Detached,
		logger:      o.Logger,
		remotes:     map[string]*remoteSnapshot{},
		byDir:       map[string]*remoteSnapshot{},
	}
	if err := s.restore(ctx); err != nil {
		inner.Close()
		lock.Close()
		return nil, err
	}
	return s, nil
}

// ErrRootInUse: another process serves the snapshotter's root.
var ErrRootInUse = errors.New("in use by another snapshotter process")

// lockRoot takes ROOT/strata.lock for this process, or fails at once: two
// processes on one root would mount over each other's snapshots (and
// containerd's metadata store would make the second wait forever).
func lockRoot(root string) (*os.File, error) {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("snapshotter: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(root, "strata.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("snapshotter: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("snapshotter: root %s: %w", root, ErrRootInUse)
		}
		return nil, fmt.Errorf("snapshotter: lock %s: %w", f.Name(), err)
	}
	return f, nil
}

// detachStale detaches the mounts below dir: FUSE mounts of remote
// snapshots whose server (an earlier process) is gone. With keepLive, a
// mount whose server still answers is kept: a detached mount's process
// outlives the snapshotter.
func detachStale(dir string, keepLive bool) error {
	mounts, err := unionfs.MountsUnder(dir)
	if err != nil {
		return err
	}
	for _, m := range mounts {
		if keepLive && liveFUSE(m) {
			continue
		}
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("snapshotter: detach stale mount %s: %w", m, err)
		}
	}
	return nil
}

// restore finds the remote snapshots an earlier process committed.
func (s *Snapshotter) restore(ctx context.Context) error {
	var found []snapshots.Info
	err := s.Snapshotter.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		if info.Kind == snapshots.KindCommitted && info.Labels[labelRemoteManifest] != "" {
			found = append(found, info)
		}
		return nil
	})
	if err != nil && !errdefs.IsNotFound(err) { // not found: a new root
		return fmt.Errorf("snapshotter: restore: %w", err)
	}
	for _, info := range found {
		n, err := strconv.Atoi(info.Labels[labelRemoteLayer])
		if err != nil {
			return fmt.Errorf("snapshotter: restore %s: label %s: %w", info.Name, labelRemoteLayer, err)
		}
		if err := s.register(ctx, info.Name, info.Labels[labelRemoteRef], info.Labels[labelRemoteManifest], n); err != nil {
			return fmt.Errorf("snapshotter: restore %s: %w", info.Name, err)
		}
	}
	return nil
}

// register records a committed remote snapshot, finding its directory
// from a read-only view of it: containerd's overlay snapshotter names a
// snapshot's directory by an internal id, and a view lists its parent's
// directory first (a bind mount of it, or the top of an overlayfs
// lowerdir list). A restart needs it; a pull knows the directory already
// (see upperOf).
func (s *Snapshotter) register(ctx context.Context, name, ref, manifest string, layer int) error {
	key := "strata-probe-" + name
	ms, err := s.Snapshotter.View(ctx, key, name)
	if err != nil {
		return err
	}
	defer s.Snapshotter.Remove(ctx, key)
	dir := ""
	if len(ms) == 1 && ms[0].Type == "bind" {
		dir = ms[0].Source
	} else if len(ms) == 1 && ms[0].Type == "overlay" {
		lowers, _ := lowerdirs(ms[0])
		dir = lowers[0]
	}
	if dir == "" {
		return fmt.Errorf("view of %s: want a bind or overlayfs mount, got %v", name, ms)
	}
	s.add(name, dir, ref, manifest, layer)
	return nil
}

// add records the remote snapshot name, whose directory is dir. With
// detached mounts, a live mount found there (a restart's) is its own.
func (s *Snapshotter) add(name, dir, ref, manifest string, layer int) {
	r := &remoteSnapshot{name: name, dir: dir, ref: ref, manifest: manifest, layer: layer}
	r.detached = s.detached != nil && liveFUSE(dir)
	s.mu.Lock()
	s.remotes[name], s.byDir[r.dir] = r, r
	s.mu.Unlock()
}

// upperOf returns the directory an active snapshot writes to, from the
// mounts its Prepare gave: a bind mount's source (no parent), or an
// overlayfs mount's upperdir. Committing the snapshot keeps it (the overlay
// snapshotter keeps the snapshot's id), so a pull learns a remote
// snapshot's directory without a view: two metadata commits, each with an
// fsync, fewer per layer. "" if the mounts are of another shape.
func upperOf(ms []mount.Mount) string {
	if len(ms) != 1 {
		return ""
	}
	switch m := ms[0]; m.Type {
	case "bind":
		return m.Source
	case "overlay":
		for _, o := range m.Options {
			if v, ok := strings.CutPrefix(o, "upperdir="); ok {
				return v
			}
		}
	}
	return ""
}

// Prepare makes an active snapshot key on parent. A layer's Prepare that
// strata can serve lazily commits the layer's snapshot at once and answers
// ErrAlreadyExists (see the package documentation).
func (s *Snapshotter) Prepare(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	var info snapshots.Info
	for _, o := range opts {
		if err := o(&info); err != nil {
			return nil, err
		}
	}
	if err := s.prepareRemote(ctx, key, parent, info.Labels); !errors.Is(err, errNotLazy) {
		return nil, err
	}
	ms, err := s.Snapshotter.Prepare(ctx, key, parent, opts...)
	if err != nil {
		return nil, err
	}
	return s.rewriteNew(ctx, key, ms)
}

// rewriteNew rewrites the mounts of the snapshot key just made, and
// removes it again if they cannot be had: a failed Prepare or View leaves
// nothing behind.
func (s *Snapshotter) rewriteNew(ctx context.Context, key string, ms []mount.Mount) ([]mount.Mount, error) {
	ms, err := s.rewrite(ctx, ms)
	if err != nil {
		if rerr := s.Snapshotter.Remove(ctx, key); rerr != nil {
			s.logger.Printf("snapshotter: remove %s after a failed mount: %v", key, rerr)
		}
		return nil, err
	}
	return ms, nil
}

// prepareRemote commits the remote snapshot a layer's Prepare asks for,
// and returns ErrAlreadyExists; errNotLazy when the layer is containerd's
// to unpack.
func (s *Snapshotter) prepareRemote(ctx context.Context, key, parent string, labels map[string]string) error {
	target := labels[labelTarget]
	ref, manifest := labels[snapshotters.TargetRefLabel], labels[snapshotters.TargetManifestDigestLabel]
	layerDigest := labels[snapshotters.TargetLayerDigestLabel]
	if target == "" || ref == "" || manifest == "" || layerDigest == "" {
		return errNotLazy // not an image layer's unpack, or no labels
	}
	below := -1 // the layer index of the parent, a remote snapshot
	if parent != "" {
		s.mu.Lock()
		p := s.remotes[parent]
		s.mu.Unlock()
		if p == nil {
			return errNotLazy // a layer below was unpacked: so is this one
		}
		below = p.layer
	}
	im, err := s.images.get(ctx, ref, manifest)
	if err != nil {
		s.logger.Printf("snapshotter: %s: %v; containerd unpacks its layers", ref, err)
		return errNotLazy
	}
	n, err := im.index(layerDigest)
	if err != nil || n != below+1 {
		// Not lazily loadable, or a chain that does not match the image's
		// order of layers: unpacked as usual.
		return errNotLazy
	}
	if s.detached != nil {
		s.startPending(ref, manifest, im.lazyCount-1)
	}
	ms, err := s.Snapshotter.Prepare(ctx, key, parent, snapshots.WithLabels(labels))
	if err != nil {
		return err
	}
	committed := map[string]string{}
	for k, v := range labels {
		committed[k] = v
	}
	committed[labelRemoteRef], committed[labelRemoteManifest], committed[labelRemoteLayer] = ref, manifest, strconv.Itoa(n)
	if err := s.Snapshotter.Commit(ctx, target, key, snapshots.WithLabels(committed)); err != nil {
		s.Snapshotter.Remove(ctx, key)
		return err // ErrAlreadyExists when another unpack committed it first
	}
	if dir := upperOf(ms); dir != "" {
		s.add(target, dir, ref, manifest, n)
	} else if err := s.register(ctx, target, ref, manifest, n); err != nil {
		s.Snapshotter.Remove(ctx, target)
		return fmt.Errorf("snapshotter: remote snapshot %s: %w", target, err)
	}
	if s.detached != nil && n == im.lazyCount-1 {
		s.mountEarly(target)
	}
	return fmt.Errorf("remote snapshot %s (layer %d of %s): %w", target, n, ref, errdefs.ErrAlreadyExists)
}

// View makes a read-only snapshot key of parent.
func (s *Snapshotter) View(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	ms, err := s.Snapshotter.View(ctx, key, parent, opts...)
	if err != nil {
		return nil, err
	}
	return s.rewriteNew(ctx, key, ms)
}

// Mounts returns how to mount the active or view snapshot key.
func (s *Snapshotter) Mounts(ctx context.Context, key string) ([]mount.Mount, error) {
	ms, err := s.Snapshotter.Mounts(ctx, key)
	if err != nil {
		return nil, err
	}
	return s.rewrite(ctx, ms)
}

// Remove removes the snapshot key; a remote one is unmounted first, once
// it is known to have no children (containerd would refuse to remove it,
// and the overlays on it would lose their lower layer's server).
func (s *Snapshotter) Remove(ctx context.Context, key string) error {
	s.mu.Lock()
	r := s.remotes[key]
	s.mu.Unlock()
	if r != nil {
		if err := s.childless(ctx, key); err != nil {
			return err
		}
		if err := r.unmount(); err != nil {
			return fmt.Errorf("snapshotter: remove %s: %w", key, err)
		}
	}
	if err := s.Snapshotter.Remove(ctx, key); err != nil {
		return err
	}
	if r != nil {
		s.mu.Lock()
		delete(s.remotes, key)
		delete(s.byDir, r.dir)
		used := false
		for _, o := range s.remotes {
			used = used || o.manifest == r.manifest
		}
		s.mu.Unlock()
		if !used {
			s.endPending(r.manifest)
			s.images.drop(r.manifest) // its last snapshot is gone
		}
	}
	return nil
}

// errChild stops a walk at the first child found.
var errChild = errors.New("has a child")

// childless fails with ErrFailedPrecondition, as containerd's Remove
// would, if a snapshot has key as its parent.
func (s *Snapshotter) childless(ctx context.Context, key string) error {
	var child string
	err := s.Snapshotter.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		child = info.Name
		return errChild
	}, `parent==`+strconv.Quote(key))
	switch {
	case errors.Is(err, errChild):
		return fmt.Errorf("snapshotter: remove %s: snapshot %s is on it: %w", key, child, errdefs.ErrFailedPrecondition)
	case err != nil:
		return fmt.Errorf("snapshotter: remove %s: look for children: %w", key, err)
	}
	return nil
}

// Close unmounts every remote snapshot this process serves (detached
// ones stay up) and closes the metadata.
func (s *Snapshotter) Close() error {
	s.mu.Lock()
	rs := make([]*remoteSnapshot, 0, len(s.remotes))
	for _, r := range s.remotes {
		if s.detached == nil {
			rs = append(rs, r)
		}
	}
	s.mu.Unlock()
	var errs []error
	for _, r := range rs {
		if err := r.unmount(); err != nil {
			errs = append(errs, err)
		}
	}
	s.mu.Lock()
	pending := s.pending
	s.pending = map[string]*pendingMount{}
	s.mu.Unlock()
	for _, p := range pending {
		p.stdin.Close() // it ends, with no directory to mount on
	}
	s.images.close()
	errs = append(errs, s.Snapshotter.Close())
	s.lock.Close() // last: the root is free for another process
	return errors.Join(errs...)
}

// unmount ends r's mount, if it has one, without waiting for its server:
// overlays that still use it hold it by private clones of the mount, and
// keep reading through it until they are unmounted themselves; the
// server's goroutines end with the connection. A mount something has open
// is detached.
func (r *remoteSnapshot) unmount() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.detached {
		r.detached = false
		return unmountDir(r.dir) // its process ends with the mount
	}
	if r.srv == nil {
		return nil
	}
	if err := unmountDir(r.dir); err != nil {
		return err
	}
	r.srv = nil
	r.stopStatus()
	return nil
}
