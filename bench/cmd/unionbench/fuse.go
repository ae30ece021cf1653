package main

import (
	"context"
	"path/filepath"
	"time"

	"github.com/stratafs/strata/bench"
	"github.com/stratafs/strata/bench/peers"
)

// fuseServer is a union served by a FUSE daemon (peers.Daemon) run in the
// foreground as our child, so its PID is known and it can be stopped and
// reaped.
type fuseServer struct {
	label  string
	daemon func(t *tree, d runDirs) *peers.Daemon
}

func (s *fuseServer) name() string { return s.label }

// strataSystem stops strata by SIGTERM, its documented contract for a
// foreground mount.
func strataSystem(bin string) *fuseServer {
	return &fuseServer{label: "strata", daemon: func(t *tree, d runDirs) *peers.Daemon {
		dm := peers.Strata(bin, []string{"--layer", t.layer0(), "--layer", t.layer1(), "--upper", d.upper}, "", d.mnt, d.base)
		dm.StopArgv, dm.StopSignal = nil, true
		return dm
	}}
}

func fuseOverlaySystem() *fuseServer {
	return &fuseServer{label: "fuse-overlayfs", daemon: func(t *tree, d runDirs) *peers.Daemon {
		return peers.FuseOverlayfs(d.mnt, d.upper, d.work, d.base, []string{t.layer0(), t.layer1()})
	}}
}

func (s *fuseServer) mount(ctx context.Context, t *tree, d runDirs, j *bench.Cleanups) (*mounted, error) {
	dm := s.daemon(t, d)
	dm.Log = filepath.Join(d.base, "server.log")
	dm.MountWait = 15 * time.Second
	stop := j.Add(dm.Stop)
	if err := dm.Start(ctx); err != nil {
		stop()
		return nil, err
	}
	return &mounted{root: d.mnt, writeRoot: d.mnt, check: dm.Alive, stop: stop, abort: dm.Abort}, nil
}
