// Command benchimages builds the benchmark images once (or finds them in
// the cache) and prints what they are: per image and layer format, the
// compressed and unpacked sizes, the file count and the layers. With
// -push it also starts a local docker-registry, pushes every variant to
// it, shows the registry's catalog and stops it. See package
// bench/images for how the images are made.
//
//	go run ./bench/cmd/benchimages               # debian-python, debian-large (minutes, once)
//	go run ./bench/cmd/benchimages -quick -push  # the small quick image, seconds
//
// It needs root (debootstrap, chroot, device nodes).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/stratafs/strata/bench/images"
	"github.com/stratafs/strata/bench/registry"
)

type options struct {
	cache         string
	quick, push   bool
	rebuild, verb bool
}

func parseFlags() options {
	var o options
	flag.StringVar(&o.cache, "cache", images.DefaultCacheDir, "cache `dir` for the images")
	flag.BoolVar(&o.quick, "quick", false, "only the small quick image made from the host's python3 (seconds, no download)")
	flag.BoolVar(&o.push, "push", false, "start a local registry, push every variant, list its catalog, stop it")
	flag.BoolVar(&o.rebuild, "rebuild", false, "rebuild even if the cache is current")
	flag.BoolVar(&o.verb, "v", true, "print build progress on stderr")
	flag.Parse()
	return o
}

func main() {
	o := parseFlags()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "benchimages:", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root: it runs debootstrap and chroot and makes device nodes")
	}
	bo := images.Options{CacheDir: o.cache, Rebuild: o.rebuild}
	if o.verb {
		bo.Progress = os.Stderr
	}
	build := images.Build
	if o.quick {
		build = images.BuildQuick
	}
	start := time.Now()
	set, err := build(ctx, bo)
	if err != nil {
		return err
	}
	fmt.Printf("images in %s (%.0f s)\n\n", set.CacheDir, time.Since(start).Seconds())
	printTable(os.Stdout, set)
	if !o.push {
		return nil
	}
	return pushAll(ctx, set)
}

func printTable(w io.Writer, set *images.Set) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "image\tformat\tcompressed MB\tunpacked MB\tfiles\tentries\tlayers\tbuild s\t")
	for _, im := range set.Images {
		for _, v := range im.Variants {
			fmt.Fprintf(tw, "%s\t%s\t%.1f\t%.1f\t%d\t%d\t%d\t%.0f\t\n", im.Name, v.Format,
				float64(v.CompressedBytes)/1e6, float64(im.UnpackedBytes)/1e6, im.Files, im.Entries, v.Layers, im.BuildSeconds)
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, im := range set.Images {
		fmt.Fprintf(w, "%s layers (uncompressed tar):\n", im.Name)
		for _, l := range im.Layers {
			fmt.Fprintf(w, "  %-10s %9.1f MB  %6d entries  %6d whiteouts  %s\n", l.Name, float64(l.TarBytes)/1e6, l.Entries, l.Whiteouts, l.CreatedBy)
		}
	}
}

// pushAll pushes every variant as IMAGE:TAG to a fresh registry, prints
// the catalog and each repository's tags, and stops the registry.
func pushAll(ctx context.Context, set *images.Set) (err error) {
	reg, err := registry.Start(ctx, registry.Options{})
	if err != nil {
		return err
	}
	defer func() {
		if serr := reg.Stop(); err == nil {
			err = serr
		}
	}()
	fmt.Printf("\nregistry %s (pid %d)\n", reg.URL, reg.PID())
	for _, im := range set.Images {
		for _, v := range im.Variants {
			t := time.Now()
			d, err := reg.Push(ctx, v.Location, im.Name+":"+v.Tag)
			if err != nil {
				return err
			}
			fmt.Printf("  pushed %-48s %s (%.1f s)\n", reg.Ref(im.Name+":"+v.Tag), d, time.Since(t).Seconds())
		}
	}
	repos, err := reg.Catalog(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("GET %s/v2/_catalog: %s\n", reg.URL, strings.Join(repos, ", "))
	for _, repo := range repos {
		tags, err := reg.Tags(ctx, repo)
		if err != nil {
			return err
		}
		fmt.Printf("  %s: %s\n", repo, strings.Join(tags, ", "))
	}
	return nil
}
