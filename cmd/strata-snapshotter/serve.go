package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/contrib/snapshotservice"
	"github.com/stratafs/strata/cache"
	"github.com/stratafs/strata/lazy"
	"github.com/stratafs/strata/snapshotter"
	"github.com/stratafs/strata/status"
	"github.com/urfave/cli/v2"
	"google.golang.org/grpc"
)

const (
	defaultRoot    = "/var/lib/strata-snapshotter"
	defaultAddress = "/run/strata-snapshotter/strata.sock"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "serve containerd's snapshots API on a unix socket (a proxy snapshotter plugin)",
		Description: "Layers pulled with 'strata-snapshotter pull' (or by the CRI plugin, which passes\n" +
			"the same labels) whose manifest announces a TOC are mounted lazily from their\n" +
			"registry; every other snapshot is an ordinary overlayfs one. Runs in the\n" +
			"foreground; SIGINT or SIGTERM stops it and unmounts its lazy layers (containers\n" +
			"still running on them then fail to read their image), unless --detached-mounts\n" +
			"serves each from a process of its own, which outlives the snapshotter: a new\n" +
			"one keeps the live mounts it finds, and running containers keep their image\n" +
			"(under systemd, run it with KillMode=process, or a stop kills those too).",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "root", Value: defaultRoot, Usage: "keep snapshots, their metadata and the lazy layers' mounts in `DIR`"},
			&cli.StringFlag{Name: "address", Value: defaultAddress, Usage: "serve on the unix socket `PATH` (containerd's proxy_plugins address)"},
			&cli.StringFlag{Name: "cache", Value: cache.DefaultDir, Usage: "keep fetched chunks and whole files, verified, in `DIR`, shared with strata mount"},
			&cli.StringFlag{Name: "cache-size", Value: "10G", Usage: "evict the least recently used entries of the cache to keep it under `SIZE` (0: no cap)"},
			&cli.BoolFlag{Name: "insecure", Usage: "allow plain HTTP to every registry (loopback ones are always allowed)"},
			&cli.BoolFlag{Name: "detached-mounts", Usage: "serve each image's lazy mount from a process of its own (started during the pull, one per image in use), which a stop or restart of the snapshotter leaves running with its containers"},
		},
		Action: runServe,
	}
}

func runServe(c *cli.Context) error {
	if c.NArg() != 0 {
		return fmt.Errorf("serve: takes no arguments, got %q (see 'strata-snapshotter serve --help')", c.Args().Slice())
	}
	// Its heap grows with the images' trees and chunks: in the background,
	// as it takes 5-20 ms (cold ctr run through containerd: 1.38 -> 1.19 s,
	// 4 runs by hand).
	go lazy.AdviseHugeHeap()
	disk, err := openCache(c)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	defer disk.Close()
	logger := log.New(os.Stderr, "strata-snapshotter: ", log.LstdFlags)
	opts := snapshotter.Options{Root: c.String("root"), Cache: disk, Insecure: c.Bool("insecure"), Logger: logger}
	if c.Bool("detached-mounts") {
		if opts.Detached, err = detachedCommand(c); err != nil {
			return fmt.Errorf("serve: %w", err)
		}
	}
	sn, err := snapshotter.New(c.Context, opts)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	defer func() {
		if err := sn.Close(); err != nil {
			logger.Print(err)
		}
	}()
	l, err := listen(c.String("address"))
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	rpc := grpc.NewServer()
	snapshotsapi.RegisterSnapshotsServer(rpc, snapshotservice.FromSnapshotter(sn))
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		logger.Printf("%v: stopping", sig)
		rpc.Stop() // Serve returns; the deferred Close unmounts
	}()
	logger.Printf("serving %s on %s", c.String("root"), c.String("address"))
	if err := rpc.Serve(l); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// listen listens on the unix socket path, replacing a socket an earlier
// process left, but not one a live process serves, nor anything else.
func listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("--address %s: exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("--address %s: another process serves on it", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, err
		}
	}
	return net.Listen("unix", path)
}

// openCache opens the chunk cache that --cache and --cache-size name.
func openCache(c *cli.Context) (*cache.Store, error) {
	max, err := cache.ParseSize(c.String("cache-size"))
	if err != nil {
		return nil, fmt.Errorf("--cache-size: %w", err)
	}
	disk, err := cache.Open(c.String("cache"), cache.WithMaxSize(max),
		cache.WithVerifiedDir(filepath.Join(status.Dir(), "verified")))
	if err != nil {
		return nil, fmt.Errorf("--cache: %w", err)
	}
	return disk, nil
}
