package main

import (
	"context"
	"path/filepath"
	"time"

	"github.com/stratafs/strata/bench/peers"
)

// fullPull is the classic start: fetch and extract every layer
// (peers.FullPull), mount them with kernel overlayfs.
func (s *sysRun) fullPull(ctx context.Context) error {
	dirs, err := peers.FullPull(ctx, s.ref, s.dir)
	if err != nil {
		return err
	}
	s.lowers = dirs
	if err := peers.MountOverlay(s.mnt, filepath.Join(s.dir, "upper"), filepath.Join(s.dir, "work"), dirs); err != nil {
		return err
	}
	s.ready = time.Since(s.start)
	s.teardown(func() error { return peers.Unmount(s.mnt) })
	return nil
}
