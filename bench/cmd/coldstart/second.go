package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/stratafs/strata/bench/peers"
)

// secondStart times the start of a second container of the same image on
// the same node, from its mount to the first output: for full-pull a new
// overlayfs mount over the layers already extracted, for strata a new
// strata process on the cache the first one filled. The first container's
// mount stays up, as it would on a node.
func (s *sysRun) secondStart(ctx context.Context) (time.Duration, error) {
	dir := filepath.Join(s.dir, "second")
	mnt, upper := filepath.Join(dir, "mnt"), filepath.Join(dir, "upper")
	for _, d := range []string{mnt, upper} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return 0, err
		}
	}
	start := time.Now()
	if s.System == "full-pull" {
		if err := peers.MountOverlay(mnt, upper, filepath.Join(dir, "work"), s.lowers); err != nil {
			return 0, err
		}
		s.teardown(func() error { return peers.Unmount(mnt) })
	} else {
		if !s.b.opts.cache {
			return 0, errors.New("a second start needs the first one's cache (-cache)")
		}
		args := append([]string{"--upper", upper, "--cache", filepath.Join(s.dir, "cache")}, s.b.opts.mountArgs...)
		d := peers.Strata(s.b.opts.strata, args, s.ref, mnt, dir)
		d.MountWait = s.b.opts.timeout
		s.teardown(d.Stop)
		if err := d.Start(ctx); err != nil {
			return 0, err
		}
	}
	return peers.FirstOutput(ctx, mnt, start, "1\n", peers.PythonPrint...)
}
