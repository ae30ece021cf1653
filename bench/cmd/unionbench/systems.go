package main

import (
	"context"
	"fmt"
	"github.com/stratafs/strata/bench"
	"github.com/stratafs/strata/bench/peers"
	"os"
	"path/filepath"
)

// runDirs are one system's fresh directories for one run.
type runDirs struct {
	base, upper, work, mnt, scratch string
}

// newRunDirs empties base and recreates it, so every run writes into a new
// upper directory and starts with nothing cached from a previous mount.
func newRunDirs(base string) (runDirs, error) {
	d := runDirs{
		base:    base,
		upper:   filepath.Join(base, "upper"),
		work:    filepath.Join(base, "work"),
		mnt:     filepath.Join(base, "mnt"),
		scratch: filepath.Join(base, "scratch"),
	}
	if peers.FsType(d.mnt) != "" {
		return d, fmt.Errorf("%s is still mounted from an earlier run", d.mnt)
	}
	if err := os.RemoveAll(base); err != nil {
		return d, err
	}
	for _, p := range []string{d.upper, d.work, d.mnt, d.scratch} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			return d, err
		}
	}
	return d, nil
}

// mounted is a system ready for the scenarios.
type mounted struct {
	root      string       // the merged tree the read scenarios walk
	writeRoot string       // where the write scenarios create files
	check     func() error // fails once the mount has gone away
	stop      func() error // unmounts and stops the server; runs once
	abort     func()       // breaks a hung mount so its stuck clients die
}

// system is one way of presenting the layers: a union or the native anchor.
type system interface {
	name() string
	mount(ctx context.Context, t *tree, d runDirs, j *bench.Cleanups) (*mounted, error)
}

// native reads layer0 itself and writes into a plain directory on the same
// file system: the floor every union is measured against. It has no union
// work to do (layer1 is absent), so it anchors the scale, not the ratios.
type native struct{}

func (native) name() string { return "native" }

func (native) mount(_ context.Context, t *tree, d runDirs, _ *bench.Cleanups) (*mounted, error) {
	return &mounted{
		root: t.layer0(), writeRoot: d.scratch,
		check: func() error { return nil }, stop: func() error { return nil }, abort: func() {},
	}, nil
}

type overlay struct{}

func (overlay) name() string { return "overlayfs" }

func (overlay) mount(_ context.Context, t *tree, d runDirs, j *bench.Cleanups) (*mounted, error) {
	if err := peers.MountOverlay(d.mnt, d.upper, d.work, []string{t.layer0(), t.layer1()}); err != nil {
		return nil, err
	}
	return &mounted{
		root: d.mnt, writeRoot: d.mnt,
		check: func() error { return peers.CheckMounted(d.mnt, "overlay") },
		stop:  j.Add(func() error { return peers.Unmount(d.mnt) }),
		abort: func() { peers.ForceUnmount(d.mnt) },
	}, nil
}
