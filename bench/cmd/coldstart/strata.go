package main

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"github.com/stratafs/strata/bench/peers"
)

// strataMount starts `strata mount --upper U REF MNT` and returns once the
// mount shows in mountinfo: the image's TOCs have been fetched by then.
func (s *sysRun) strataMount(ctx context.Context) error {
	upper := filepath.Join(s.dir, "upper")
	if err := os.MkdirAll(upper, 0o755); err != nil {
		return err
	}
	args := []string{"--upper", upper}
	if s.b.opts.cache {
		args = append(args, "--cache", filepath.Join(s.dir, "cache"))
	} else {
		args = append(args, "--no-cache") // never the node's cache: every run starts cold
	}
	d := peers.Strata(s.b.opts.strata, append(args, s.b.opts.mountArgs...), s.ref, s.mnt, s.dir)
	d.MountWait = s.b.opts.timeout
	s.teardown(d.Stop)
	if err := d.Start(ctx); err != nil {
		return err
	}
	s.ready = time.Since(s.start)
	return nil
}

// strataStat sums the mount's own account over its layers, read after one
// refresh of it.
func (s *sysRun) strataStat(ctx context.Context) error {
	time.Sleep(peers.StatRefresh)
	t, err := peers.StrataStat(ctx, s.b.opts.strata, s.mnt)
	if err != nil {
		return err
	}
	s.fetched, s.served, s.requests = t.Fetched, t.Served, t.Requests
	return nil
}
