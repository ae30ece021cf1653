package main

import (
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"strconv"

	"github.com/stratafs/strata/cache"
	"github.com/stratafs/strata/lazy"
	"github.com/stratafs/strata/snapshotter"
	"github.com/urfave/cli/v2"
)

// serveMountCommand is the process of one detached mount (serve
// --detached-mounts starts it): hidden, as only serve runs it.
func serveMountCommand() *cli.Command {
	return &cli.Command{
		Name:      "serve-mount",
		Hidden:    true,
		Usage:     "serve layers 0..N of an image, read-only, on DIR until it is unmounted (started by serve --detached-mounts); DIR - is read from stdin once the layers are open",
		ArgsUsage: "DIR|-",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "ref", Required: true, Usage: "the image's `REFERENCE`"},
			&cli.StringFlag{Name: "manifest", Required: true, Usage: "its manifest `DIGEST`"},
			&cli.IntFlag{Name: "layer", Required: true, Usage: "serve layers 0 to `N`"},
			&cli.StringFlag{Name: "cache", Value: cache.DefaultDir, Usage: "the chunk cache `DIR`"},
			&cli.StringFlag{Name: "cache-size", Value: "10G", Usage: "its cap, `SIZE`"},
			&cli.BoolFlag{Name: "insecure", Usage: "allow plain HTTP to every registry"},
		},
		Action: runServeMount,
	}
}

func runServeMount(c *cli.Context) error {
	if c.NArg() != 1 {
		return errors.New("serve-mount: want DIR")
	}
	go lazy.AdviseHugeHeap()
	disk, err := openCache(c)
	if err != nil {
		return fmt.Errorf("serve-mount: %w", err)
	}
	defer disk.Close()
	spec := snapshotter.MountSpec{Ref: c.String("ref"), Manifest: c.String("manifest"), Layer: c.Int("layer"), Dir: c.Args().First()}
	if spec.Dir == "-" {
		spec.Dir = ""
	}
	logger := log.New(os.Stderr, "strata-snapshotter serve-mount: ", log.LstdFlags)
	// It ends when its mount is unmounted, by whoever. Killed, it leaves
	// the mount dead (ENOTCONN) until serve mounts the snapshot anew.
	return snapshotter.ServeDetached(c.Context, snapshotter.ServeOptions{Spec: spec, DirFrom: os.Stdin, Cache: disk, Insecure: c.Bool("insecure"), Logger: logger})
}

// detachedCommand returns how serve starts a detached mount's process:
// this binary's serve-mount, on serve's cache.
func detachedCommand(c *cli.Context) (func(snapshotter.MountSpec) *exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("--detached-mounts: %w", err)
	}
	base := []string{"serve-mount", "--cache", c.String("cache"), "--cache-size", c.String("cache-size")}
	if c.Bool("insecure") {
		base = append(base, "--insecure")
	}
	return func(sp snapshotter.MountSpec) *exec.Cmd {
		dir := sp.Dir
		if dir == "" {
			dir = "-"
		}
		args := append(append([]string(nil), base...), "--ref", sp.Ref, "--manifest", sp.Manifest, "--layer", strconv.Itoa(sp.Layer), dir)
		return exec.Command(exe, args...)
	}, nil
}
