package snapshotter

import (
	"context"
	"fmt"
	"log"
	"strings"

	"github.com/containerd/containerd/mount"
	"github.com/stratafs/strata/status"
	"github.com/stratafs/strata/unionfs"
)

// rewrite turns the mounts containerd's overlay snapshotter gives for a
// snapshot into strata's: each remote snapshot they name is mounted, and
// an overlayfs lowerdir list ends at the first remote snapshot, whose
// mount already merges every layer below it (see the package
// documentation).
func (s *Snapshotter) rewrite(ctx context.Context, ms []mount.Mount) ([]mount.Mount, error) {
	if len(ms) != 1 {
		return ms, nil
	}
	m := ms[0]
	switch m.Type {
	case "bind": // a snapshot with no parent, or a view of one
		if r := s.remoteAt(m.Source); r != nil {
			if err := s.mountRemote(ctx, r); err != nil {
				return nil, err
			}
		}
		return ms, nil
	case "overlay":
		return s.rewriteOverlay(ctx, m)
	}
	return ms, nil
}

const lowerdirOption = "lowerdir="

// lowerdirs returns an overlayfs mount's lower directories, top first,
// and the index of its lowerdir option (-1: none).
func lowerdirs(m mount.Mount) ([]string, int) {
	for i, o := range m.Options {
		if v, ok := strings.CutPrefix(o, lowerdirOption); ok {
			return strings.Split(v, ":"), i
		}
	}
	return []string{""}, -1
}

func (s *Snapshotter) rewriteOverlay(ctx context.Context, m mount.Mount) ([]mount.Mount, error) {
	lowers, at := lowerdirs(m)
	if at < 0 {
		return []mount.Mount{m}, nil
	}
	upper := false
	for _, o := range m.Options {
		upper = upper || strings.HasPrefix(o, "upperdir=")
	}
	cut := len(lowers)
	for i, dir := range lowers {
		if r := s.remoteAt(dir); r != nil {
			if err := s.mountRemote(ctx, r); err != nil {
				return nil, err
			}
			cut = i + 1
			break
		}
	}
	if cut == len(lowers) {
		return []mount.Mount{m}, nil
	}
	lowers = lowers[:cut]
	if !upper && len(lowers) == 1 {
		// overlayfs needs two layers without an upper: a read-only view
		// of one tree is a read-only bind mount of it.
		return []mount.Mount{{Type: "bind", Source: lowers[0], Options: []string{"ro", "rbind"}}}, nil
	}
	opts := append([]string(nil), m.Options...)
	opts[at] = lowerdirOption + strings.Join(lowers, ":")
	return []mount.Mount{{Type: m.Type, Source: m.Source, Options: opts}}, nil
}

// remoteAt returns the remote snapshot whose directory is dir, if any.
func (s *Snapshotter) remoteAt(dir string) *remoteSnapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byDir[dir]
}

// mountRemote mounts r, unless it is mounted: the merged tree of its
// image's layers 0..r.layer, read-only and open-less (the kernel opens
// and caches files without asking strata), on r.dir.
func (s *Snapshotter) mountRemote(ctx context.Context, r *remoteSnapshot) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.srv != nil {
		return nil
	}
	if s.detached != nil {
		return s.mountDetached(ctx, r)
	}
	srv, im, err := s.images.mount(ctx, r.ref, r.manifest, r.layer, func() (string, error) { return r.dir, nil }, s.logger)
	if err != nil {
		return fmt.Errorf("snapshotter: mount %s: %w", r.name, err)
	}
	r.srv = srv
	r.stopStatus = s.publish(r, im)
	s.logger.Printf("mounted layers 0-%d of %s (%s) on %s", r.layer, r.ref, r.manifest, r.dir)
	return nil
}

// publish keeps a status file for r's mount, which `strata stat` reads
// (given r's directory, or a container's root whose overlay has it as its
// top lower directory), until the function it returns is called.
func (s *Snapshotter) publish(r *remoteSnapshot, im *image) func() {
	return status.Start(s.logger, statusOf(r.ref, r.manifest, r.dir), im.collect(r.layer, s.images.disk))
}

// mount mounts layers 0..n of the image ref at manifest, read-only and
// open-less, on the directory dir gives once they are open, and returns
// the image for its counters.
func (is *images) mount(ctx context.Context, ref, manifest string, n int, dir func() (string, error), logger *log.Logger) (*unionfs.Server, *image, error) {
	im, err := is.get(ctx, ref, manifest)
	if err != nil {
		return nil, nil, err
	}
	layers, err := im.layers(ctx, n)
	if err != nil {
		return nil, nil, err
	}
	d, err := dir()
	if err != nil {
		return nil, nil, err
	}
	srv, err := unionfs.Mount(ctx, d, layers, unionfs.WithOpenless(true), unionfs.WithLogger(logger))
	return srv, im, err
}
