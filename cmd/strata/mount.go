package main

import (
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/stratafs/strata/layer"
	"github.com/stratafs/strata/unionfs"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

func mountCommand() *cli.Command {
	return &cli.Command{
		Name:      "mount",
		Usage:     "mount layers as one merged tree (foreground; Ctrl-C or 'strata umount' unmounts)",
		ArgsUsage: "MOUNTPOINT",
		Description: "Layers are given lowest first (the base image first), each an extracted\n" +
			"layer directory whose deletions are either OCI whiteouts (.wh.NAME,\n" +
			".wh..wh..opq) or overlayfs ones (char device 0/0, trusted.overlay.opaque=y).\n" +
			"Without --upper the mount is read-only. With --upper every change lands in\n" +
			"that directory in overlayfs's format, so it can also be used as the\n" +
			"upperdir of a kernel overlayfs mount of the same layers.\n\n" +
			"Example:\n" +
			"   strata mount --layer base/ --layer app/ --upper ctr/upper /mnt/ctr",
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "layer", Aliases: []string{"l"}, Usage: "layer `DIR`, lowest first; repeat for each layer", Required: true},
			&cli.StringFlag{Name: "upper", Aliases: []string{"u"}, Usage: "writable upper `DIR` (default: none, read-only mount)"},
			&cli.DurationFlag{Name: "timeout", Value: unionfs.DefaultTimeout, Usage: "how long the kernel caches names and attributes"},
			&cli.BoolFlag{Name: "no-passthrough", Usage: "serve every read through strata instead of FUSE passthrough"},
			&cli.BoolFlag{Name: "debug", Usage: "log every FUSE request"},
			&cli.StringFlag{Name: "cpu-profile", Usage: "write a Go CPU profile of the mount's life to `FILE` (for go tool pprof)"},
		},
		Action: runMount,
	}
}

func runMount(c *cli.Context) error {
	if c.NArg() != 1 {
		return fmt.Errorf("mount: want exactly one MOUNTPOINT, got %d arguments (see 'strata mount --help')", c.NArg())
	}
	mnt := c.Args().First()
	if err := checkMountpoint(mnt); err != nil {
		return err
	}
	var layers []layer.Layer
	defer func() {
		for _, l := range layers {
			l.(*layer.Local).Close()
		}
	}()
	for _, dir := range c.StringSlice("layer") {
		l, err := layer.OpenLocal(dir)
		if err != nil {
			return fmt.Errorf("mount: %w", err)
		}
		layers = append(layers, l)
	}
	opts := []unionfs.Option{
		unionfs.WithTimeout(c.Duration("timeout")),
		unionfs.WithPassthrough(!c.Bool("no-passthrough")),
		unionfs.WithDebug(c.Bool("debug")),
		unionfs.WithLogger(log.New(os.Stderr, "strata: ", log.LstdFlags)),
	}
	if up := c.String("upper"); up != "" {
		opts = append(opts, unionfs.WithUpper(up))
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if p := c.String("cpu-profile"); p != "" {
		stopProfile, err := startCPUProfile(p)
		if err != nil {
			return fmt.Errorf("mount: %w", err)
		}
		defer stopProfile()
	}
	srv, err := unionfs.Mount(ctx, mnt, layers, opts...)
	if err != nil {
		return fmt.Errorf("mount: %w", err)
	}
	go func() {
		<-ctx.Done()
		if err := srv.Unmount(); err != nil {
			log.Printf("strata: unmount %s: %v", mnt, err)
		}
	}()
	srv.Wait()
	return nil
}

// checkMountpoint insists on an existing empty directory, so that a mount
// never hides files a user still wanted to see.
func checkMountpoint(mnt string) error {
	f, err := os.Open(mnt)
	if err != nil {
		return fmt.Errorf("mount: mountpoint: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.IsDir() {
		return fmt.Errorf("mount: mountpoint %s: not a directory", mnt)
	}
	names, err := f.Readdirnames(1)
	if len(names) > 0 {
		return fmt.Errorf("mount: mountpoint %s: not empty", mnt)
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("mount: mountpoint %s: %w", mnt, err)
	}
	return nil
}

func umountCommand() *cli.Command {
	return &cli.Command{
		Name:      "umount",
		Aliases:   []string{"unmount"},
		Usage:     "unmount a strata mount from another shell (the mounting process then exits)",
		ArgsUsage: "MOUNTPOINT",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "lazy", Usage: "detach now even if busy (MNT_DETACH)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return fmt.Errorf("umount: want exactly one MOUNTPOINT, got %d arguments", c.NArg())
			}
			flags := 0
			if c.Bool("lazy") {
				flags = unix.MNT_DETACH
			}
			mnt := c.Args().First()
			if err := unix.Unmount(mnt, flags); err != nil {
				if errors.Is(err, unix.EINVAL) {
					return fmt.Errorf("umount %s: not a mount point", mnt)
				}
				return fmt.Errorf("umount %s: %w", mnt, err)
			}
			return nil
		},
	}
}

// startCPUProfile profiles the process into path until the returned
// function runs.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
