package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	digest "github.com/opencontainers/go-digest"
	"github.com/stratafs/strata/cache"
	"github.com/stratafs/strata/layer"
	"github.com/stratafs/strata/lazy"
	"github.com/stratafs/strata/lazy/remote"
	"github.com/stratafs/strata/status"
	"github.com/stratafs/strata/unionfs"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

func mountCommand() *cli.Command {
	return &cli.Command{
		Name:      "mount",
		Usage:     "mount an image from a registry, or local layers, as one tree (foreground; Ctrl-C or 'strata umount' unmounts)",
		ArgsUsage: "[REF] MOUNTPOINT",
		Description: "With REF (an image reference such as registry:5000/repo:tag or\n" +
			"repo@sha256:...), strata mounts the image straight from its registry:\n" +
			"it fetches each layer's table of contents, and a file's bytes the first\n" +
			"time they are read, with HTTP Range requests, each chunk verified against\n" +
			"the layer's digests. Every layer must be eStargz or zstd:chunked (its\n" +
			"manifest names its TOC digest). Credentials come from ~/.docker/config.json;\n" +
			"registries on localhost or 127.0.0.1 are reached over plain HTTP.\n\n" +
			"With --layer, strata mounts extracted layer directories instead, lowest\n" +
			"(the base image) first, whose deletions are either OCI whiteouts (.wh.NAME,\n" +
			".wh..wh..opq) or overlayfs ones (char device 0/0, trusted.overlay.opaque=y).\n\n" +
			"Without --upper the mount is read-only. With --upper every change lands in\n" +
			"that directory in overlayfs's format, so it can also be used as the\n" +
			"upperdir of a kernel overlayfs mount of the same layers.\n\n" +
			"With --kernel-overlay, strata serves only the image, read-only, and\n" +
			"kernel overlayfs provides the writable layer on top: strata's own union\n" +
			"costs a round trip to strata per open and serves writes itself; this\n" +
			"mode costs neither, and keeps the kernel's page cache of each file\n" +
			"across opens. Mounts of one image share one image server and its page\n" +
			"cache (see README).\n\n" +
			"Examples:\n" +
			"   strata mount --upper ctr/upper 127.0.0.1:5000/app:latest /mnt/ctr\n" +
			"   strata mount --layer base/ --layer app/ --upper ctr/upper /mnt/ctr\n" +
			"   strata mount --kernel-overlay --upper ctr/upper 127.0.0.1:5000/app:latest /mnt/ctr",
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "layer", Aliases: []string{"l"}, Usage: "layer `DIR`, lowest first; repeat for each layer (instead of REF)"},
			&cli.StringFlag{Name: "upper", Aliases: []string{"u"}, Usage: "writable upper `DIR` (default: none, read-only mount)"},
			&cli.BoolFlag{Name: "insecure", Usage: "reach the registry over plain HTTP or unverified TLS"},
			&cli.StringFlag{Name: "platform", Usage: "`OS/ARCH[/VARIANT]` to pick from a multi-platform image (default: this machine's)"},
			&cli.StringFlag{Name: "cache", Value: cache.DefaultDir, Usage: "keep fetched chunks and whole files, verified, in `DIR`, shared by every mount and strata process that names it"},
			&cli.StringFlag{Name: "cache-size", Value: "10G", Usage: "evict the least recently used entries of the cache to keep it under `SIZE` (512M, 10G, 1.5GiB; 0: no cap)"},
			&cli.BoolFlag{Name: "no-cache", Usage: "keep fetched chunks in memory only (64 MiB), for this mount alone"},
			&cli.StringFlag{Name: "pull", Value: "missing", Usage: "when to ask the registry what REF's tag points to: `POLICY` missing (only the first time on this node: later mounts take the digest recorded in the cache, as docker run does, and start without the registry), always (every mount, recording the answer), or never (only tags recorded before); a REF by digest needs no asking"},
			&cli.StringFlag{Name: "prefetch", Value: "auto", Usage: "what to fetch before it is read: `MODE` landmark (an eStargz layer's files before its .prefetch.landmark), all (every layer whole, in the background while reads pause), auto (landmark, then a whole layer once reads have fetched a quarter of it, as a build or a scan does), or none; all and auto need the on-disk cache, so --no-cache turns auto into landmark"},
			&cli.DurationFlag{Name: "timeout", Value: unionfs.DefaultTimeout, Usage: "how long the kernel caches names and attributes"},
			&cli.BoolFlag{Name: "no-passthrough", Usage: "serve every read through strata instead of FUSE passthrough"},
			&cli.BoolFlag{Name: "kernel-overlay", Usage: "serve the image read-only from a private mount that the kernel opens files of without asking strata, and with --upper put kernel overlayfs over it on MOUNTPOINT: warm reads and every write then run at the kernel's own speed; renaming a directory of the image fails with EXDEV (mv copies instead), as on overlayfs"},
			&cli.StringFlag{Name: "workdir", Usage: "with --kernel-overlay and --upper: overlayfs's work `DIR`, empty, on the upper's filesystem (default: UPPER.work, made if missing)"},
			&cli.BoolFlag{Name: "image-server", Hidden: true, Usage: "serve REF read-only and open-less on MOUNTPOINT until no overlay uses it (started by --kernel-overlay mounts)"},
			&cli.StringFlag{Name: "record", Usage: "at unmount, write to `FILE` the files read from the image, in the order first read, for 'strata convert --prioritize'"},
			&cli.BoolFlag{Name: "debug", Usage: "log every FUSE request"},
			&cli.StringFlag{Name: "cpu-profile", Usage: "write a Go CPU profile of the mount's life to `FILE` (for go tool pprof)"},
			&cli.StringFlag{Name: "heap-profile", Usage: "write a Go heap profile to `FILE` when the mount ends, before its layers are closed (for go tool pprof)"},
		},
		Action: runMount,
	}
}

func runMount(c *cli.Context) error {
	local := len(c.StringSlice("layer")) > 0
	want := 2
	if local {
		want = 1
	}
	if c.NArg() != want {
		return fmt.Errorf("mount: want REF MOUNTPOINT, or --layer DIR ... and exactly one MOUNTPOINT; got %d arguments (see 'strata mount --help')", c.NArg())
	}
	mnt := c.Args().Get(want - 1)
	if err := checkMountpoint(mnt); err != nil {
		return err
	}
	overlay, upper := c.Bool("kernel-overlay"), c.String("upper")
	mounted := func() {}
	if !overlay || upper == "" || c.String("record") != "" {
		// A process that will serve a mount: its heap grows with the
		// layers' trees and chunks. No collections until it is mounted
		// (see holdCollector); the advice in the background, as it takes
		// 5-20 ms, while the image is resolved. A --kernel-overlay
		// --upper mount only attaches an overlay to the image server's
		// mount.
		mounted = holdCollector()
		go lazy.AdviseHugeHeap()
	}
	if c.String("workdir") != "" && (!overlay || upper == "") {
		return errors.New("mount: --workdir needs --kernel-overlay and --upper")
	}
	if c.Bool("image-server") && (local || upper != "" || overlay) {
		return errors.New("mount: --image-server takes a REF, and neither --upper nor --kernel-overlay")
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := log.New(os.Stderr, "strata: ", log.LstdFlags)
	if p := c.String("cpu-profile"); p != "" {
		stopProfile, err := startCPUProfile(p)
		if err != nil {
			return fmt.Errorf("mount: %w", err)
		}
		defer stopProfile()
	}
	var layers []layer.Layer
	var what string
	var collect status.Collect
	var closeAll func()
	var err error
	if local {
		layers, closeAll, err = openLocalLayers(c.StringSlice("layer"))
		what = fmt.Sprintf("%d local layers", len(layers))
		collect = localStatus(c.StringSlice("layer"))
	} else {
		var src *imageSource
		if src, err = prepareImage(ctx, c); err != nil {
			return fmt.Errorf("mount: %w", err)
		}
		// A recording mount must see every read of the image: it never
		// shares one.
		if overlay && upper != "" && c.String("record") == "" {
			defer src.closeCache()
			if err := mountShared(ctx, c, logger, src, mnt); err != nil {
				return fmt.Errorf("mount: %w", err)
			}
			return nil
		}
		layers, what, collect, closeAll, err = src.open(ctx, c)
	}
	if closeAll != nil {
		defer closeAll()
	}
	if err != nil {
		return fmt.Errorf("mount: %w", err)
	}
	if p := c.String("heap-profile"); p != "" {
		defer writeHeapProfile(logger, p) // before closeAll: what the mount held
	}
	return serve(ctx, c, logger, mnt, layers, what, collect, mounted)
}

// serve mounts the union and serves it until it is unmounted or ctx ends.
// It calls mounted once the mount is up.
// With --kernel-overlay the union is read-only and open-less; with --upper
// too, it is mounted in a private directory and kernel overlayfs on mnt,
// and strata stops when that is unmounted, by whoever. An image server
// (--image-server) serves until no overlay uses its mount, and ignores ctx.
func serve(ctx context.Context, c *cli.Context, logger *log.Logger, mnt string, layers []layer.Layer, what string, collect status.Collect, mounted func()) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	upper, overlay, server := c.String("upper"), c.Bool("kernel-overlay"), c.Bool("image-server")
	opts := []unionfs.Option{
		unionfs.WithTimeout(c.Duration("timeout")),
		unionfs.WithPassthrough(!c.Bool("no-passthrough")),
		unionfs.WithDebug(c.Bool("debug")),
		unionfs.WithLogger(logger),
		unionfs.WithOpenless(overlay || server),
	}
	fuseMnt := mnt
	switch {
	case overlay && upper != "":
		dir, err := privateMountpoint()
		if err != nil {
			return fmt.Errorf("mount: %w", err)
		}
		defer os.Remove(dir)
		fuseMnt = dir
	case upper != "":
		opts = append(opts, unionfs.WithUpper(upper))
	}
	srv, err := unionfs.Mount(ctx, fuseMnt, layers, opts...)
	if err != nil {
		return fmt.Errorf("mount: %w", err)
	}
	if fuseMnt != mnt {
		if err := attachOverlay(c, fuseMnt, mnt); err != nil {
			srv.Unmount()
			srv.Wait()
			return fmt.Errorf("mount: %w", err)
		}
		go func() {
			if unionfs.WaitUnmounted(ctx, mnt) == nil {
				cancel()
			}
		}()
	}
	logger.Printf("mounted %s on %s", what, mnt)
	mounted()
	unused := make(chan struct{}) // an image server's unmount is done
	if server {
		if lock, err := holdServerLock(mnt); err != nil {
			logger.Printf("image %s: %v", mnt, err)
		} else {
			defer lock.Close() // after everything else: the process is as good as gone
		}
		go func() {
			serveUntilUnused(logger, mnt)
			close(unused)
		}()
	} else {
		close(unused)
		go func() {
			<-ctx.Done()
			if fuseMnt != mnt {
				detach(logger, mnt)
			}
			if err := srv.Unmount(); err != nil {
				logger.Printf("unmount %s: %v", fuseMnt, err)
			}
		}()
	}
	stopStatus := status.Start(logger, &status.Mount{Mountpoint: mnt, Source: what, PID: os.Getpid(), Started: time.Now()}, collect)
	srv.Wait()
	// The connection can end as soon as the image server unmounts its
	// image: let it finish (remove the directory and its log) first.
	<-unused
	stopStatus()
	return nil
}

// privateMountpoint makes an empty directory, reachable by root only, for
// the image under a --kernel-overlay mount.
func privateMountpoint() (string, error) {
	parent, err := imagesDir()
	if err != nil {
		return "", err
	}
	return os.MkdirTemp(parent, "image-")
}

// workdir is overlayfs's work directory: --workdir, or UPPER.work.
func workdir(c *cli.Context) string {
	if w := c.String("workdir"); w != "" {
		return w
	}
	return filepath.Clean(c.String("upper")) + ".work"
}

func localStatus(dirs []string) status.Collect {
	return func() ([]status.Layer, *status.Cache) {
		out := make([]status.Layer, len(dirs))
		for i, d := range dirs {
			out[i] = status.Layer{Name: d, Format: "local"}
		}
		return out, nil
	}
}

func openLocalLayers(dirs []string) ([]layer.Layer, func(), error) {
	var opened []*layer.Local
	closeAll := func() {
		for _, l := range opened {
			l.Close()
		}
	}
	layers := make([]layer.Layer, 0, len(dirs))
	for _, dir := range dirs {
		l, err := layer.OpenLocal(dir)
		if err != nil {
			return nil, closeAll, err
		}
		opened = append(opened, l)
		layers = append(layers, l)
	}
	return layers, closeAll, nil
}

// imageSource is a resolved image whose layers are not open yet, with the
// cache its layers will use.
type imageSource struct {
	img        *remote.Image
	disk       *cache.Store // nil with --no-cache
	lopts      []lazy.Option
	prefetch   lazy.Prefetch
	closeCache func()
}

// prepareImage opens the cache and resolves the reference to one image.
func prepareImage(ctx context.Context, c *cli.Context) (*imageSource, error) {
	prefetch, err := prefetchMode(c.String("prefetch"), !c.Bool("no-cache"))
	if err != nil {
		return nil, err
	}
	lopts, disk, closeCache, err := chunkStoreOptions(c)
	if err != nil {
		return nil, err
	}
	if c.String("record") != "" {
		lopts = append(lopts, lazy.WithRecord())
	}
	img, err := resolveImage(ctx, c, disk)
	if err != nil {
		closeCache()
		return nil, err
	}
	return &imageSource{img: img, disk: disk, lopts: lopts, prefetch: prefetch, closeCache: closeCache}, nil
}

// open opens each layer of the image: lazily from its TOC (fetched now,
// prefetch started), or by streaming its blob. It also returns how to read
// the layers' counters for the status file, and what to close at the end,
// the cache included; on error, open closes the cache itself.
func (s *imageSource) open(ctx context.Context, c *cli.Context) ([]layer.Layer, string, status.Collect, func(), error) {
	img, disk, lopts, prefetch, closeCache := s.img, s.disk, s.lopts, s.prefetch, s.closeCache
	ils, sls, blobs, err := imageLayers(img)
	if err != nil {
		closeCache()
		return nil, "", nil, nil, err
	}
	opened, err := lazy.OpenImageLayers(ctx, ils, sls, lopts...)
	if err != nil {
		closeCache()
		return nil, "", nil, nil, fmt.Errorf("%s: %w", c.Args().First(), err)
	}
	layers := make([]layer.Layer, len(opened))
	for i, o := range opened {
		layers[i] = o.Layer
		if o.Lazy != nil {
			o.Lazy.Prefetch(prefetch)
		}
	}
	closeAll := func() {
		if rec := c.String("record"); rec != "" {
			if err := writeRecord(rec, opened); err != nil {
				fmt.Fprintf(os.Stderr, "strata: mount: --record: %v\n", err)
			}
		}
		for _, o := range opened {
			if o.Stream != nil {
				o.Stream.Close()
			}
			if o.Lazy != nil {
				o.Lazy.Close() // stops its read-ahead
			}
		}
		closeCache()
	}
	return layers, img.Name(), imageStatus(opened, blobs, disk, c.String("cache")), closeAll, nil
}

// writeRecord writes the files read from the image's lazy layers, each in
// the order of its first read, one absolute path per line: the list
// `strata convert --prioritize` takes.
func writeRecord(path string, opened []lazy.Opened) error {
	var sb strings.Builder
	seen := map[string]bool{}
	for _, o := range opened {
		if o.Lazy == nil {
			continue
		}
		for _, p := range o.Lazy.Accessed() {
			if !seen[p] {
				seen[p] = true
				sb.WriteString("/" + p + "\n")
			}
		}
	}
	return os.WriteFile(path, []byte(sb.String()), 0o644)
}

// resolveImage resolves the reference, keeping manifests, configs and
// what each tag resolved to in the cache (an image named by digest, or by
// a tag recorded, then resolves from it, as --pull says).
func resolveImage(ctx context.Context, c *cli.Context, disk *cache.Store) (*remote.Image, error) {
	pull, err := remote.ParsePull(c.String("pull"))
	if err != nil {
		return nil, err
	}
	ropts := []remote.Option{remote.WithInsecure(c.Bool("insecure"))}
	if p := c.String("platform"); p != "" {
		ropts = append(ropts, remote.WithPlatform(p))
	}
	switch {
	case disk != nil:
		ropts = append(ropts, remote.WithStore(disk), remote.WithRefs(disk, pull))
	case pull == remote.PullNever:
		return nil, errors.New("--pull never needs the on-disk cache, where tags are recorded")
	}
	img, err := remote.Resolve(ctx, c.Args().First(), ropts...)
	if errors.Is(err, remote.ErrNotPulled) {
		return nil, fmt.Errorf("%w (--pull never; mount it once with --pull missing or always)", err)
	}
	return img, err
}

// imageLayers describes the image's layers for lazy.OpenImageLayers.
func imageLayers(img *remote.Image) ([]lazy.ImageLayer, []lazy.StreamLayer, []*remote.Blob, error) {
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, nil, nil, err
	}
	descs := img.Layers()
	ils := make([]lazy.ImageLayer, len(descs))
	sls := make([]lazy.StreamLayer, len(descs))
	blobs := make([]*remote.Blob, len(descs))
	for i, d := range descs {
		if blobs[i], err = img.Layer(i); err != nil {
			return nil, nil, nil, err
		}
		ils[i] = lazy.ImageLayer{Digest: d.Digest, Annotations: d.Annotations, Blob: blobs[i]}
		sls[i] = lazy.StreamLayer{MediaType: d.MediaType}
		if i < len(cfg.RootFS.DiffIDs) {
			sls[i].DiffID = digest.Digest(cfg.RootFS.DiffIDs[i].String())
		}
	}
	return ils, sls, blobs, nil
}

// prefetchMode reads --prefetch. Whole layers need a store that can hold
// them: without the on-disk cache, auto fetches only the landmark's files.
func prefetchMode(v string, disk bool) (lazy.Prefetch, error) {
	switch v {
	case "auto":
		if disk {
			return lazy.PrefetchAuto, nil
		}
		return lazy.PrefetchLandmark, nil
	case "none":
		return lazy.PrefetchNone, nil
	case "landmark":
		return lazy.PrefetchLandmark, nil
	case "all":
		return lazy.PrefetchAll, nil
	}
	return 0, fmt.Errorf("mount: --prefetch %q: want auto, landmark, all or none", v)
}

// memoryChunks is the memory kept for hot chunks of all layers together
// when an on-disk cache backs them.
const memoryChunks = 64 << 20

// memoryQueue is how many bytes of chunks may wait for the disk cache:
// enough to let a burst of reads go on at memory speed, however small its
// files' chunks, and little next to the memory store's 64 MiB.
const memoryQueue = 16 << 20

// chunkStoreOptions opens the on-disk cache (unless --no-cache) and puts it
// behind a memory store shared by every layer, as their chunk store and
// their whole-file store. The function returned closes them, once the
// layers are closed.
func chunkStoreOptions(c *cli.Context) ([]lazy.Option, *cache.Store, func(), error) {
	if c.Bool("no-cache") {
		return nil, nil, func() {}, nil
	}
	max, err := cache.ParseSize(c.String("cache-size"))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("mount: --cache-size: %w", err)
	}
	disk, err := cache.Open(c.String("cache"), cache.WithMaxSize(max),
		cache.WithVerifiedDir(filepath.Join(status.Dir(), "verified")))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("mount: --cache: %w", err)
	}
	tiered := lazy.NewAsyncTieredStore(lazy.NewMemoryStore(memoryChunks), disk, memoryQueue)
	closeCache := func() {
		tiered.Close() // the chunks still queued reach the disk
		disk.Close()   // stops its eviction
	}
	return []lazy.Option{lazy.WithChunkStore(tiered), lazy.WithFileStore(disk)}, disk, closeCache, nil
}

func imageStatus(opened []lazy.Opened, blobs []*remote.Blob, disk *cache.Store, dir string) status.Collect {
	return func() ([]status.Layer, *status.Cache) {
		out := make([]status.Layer, len(opened))
		for i, o := range opened {
			var streamErr error
			if o.Lazy == nil {
				streamErr = o.Stream.Err()
			}
			out[i] = status.LayerOf(blobs[i], o.Lazy, streamErr)
		}
		return out, status.CacheOf(disk, dir)
	}
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
// writeHeapProfile writes the live heap, after a collection, to path.
func writeHeapProfile(logger *log.Logger, path string) {
	f, err := os.Create(path)
	if err == nil {
		runtime.GC()
		err = pprof.WriteHeapProfile(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		logger.Printf("heap profile: %v", err)
	}
}

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
