package main

import (
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/stratafs/strata/lazy/convert"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

func convertCommand() *cli.Command {
	return &cli.Command{
		Name:      "convert",
		Usage:     "re-write an image's layers into a lazily loadable format (zstd:chunked or eStargz)",
		ArgsUsage: "SRC DST",
		Description: "SRC and DST are registry references (registry:5000/repo:tag) or OCI image\n" +
			"layouts (oci:PATH[:TAG]). Each layer not already in the format is re-written\n" +
			"with a table of contents, so that 'strata mount' (and stargz-snapshotter or\n" +
			"podman) can fetch its files one by one; the config is kept, with its\n" +
			"diff_ids updated. The new manifest's digest is printed on stdout.\n" +
			"Credentials come from ~/.docker/config.json; registries on localhost or\n" +
			"127.0.0.1 are reached over plain HTTP.\n\n" +
			"Examples:\n" +
			"   strata convert 127.0.0.1:5000/app:latest 127.0.0.1:5000/app:zstd\n" +
			"   strata convert --format estargz oci:./app:latest oci:./app:esgz",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "format", Value: string(convert.DefaultFormat), Usage: "`FORMAT` of the new layers: zstd:chunked or estargz"},
			&cli.IntFlag{Name: "chunk-size", Value: convert.DefaultChunkSize, Usage: "uncompressed `BYTES` per chunk: the unit a lazy mount fetches, decompresses and verifies"},
			&cli.BoolFlag{Name: "insecure", Usage: "reach the registries over plain HTTP or unverified TLS"},
			&cli.StringFlag{Name: "platform", Usage: "`OS/ARCH[/VARIANT]` to pick from a multi-platform image (default: this machine's)"},
			&cli.StringFlag{Name: "prioritize", Usage: "put the files listed in `FILE` (one path per line, as 'strata mount --record' writes them) first in their layers, before the eStargz prefetch landmark, so a lazy mount fetches them at once"},
		},
		Action: runConvert,
	}
}

func runConvert(c *cli.Context) error {
	if c.NArg() != 2 {
		return fmt.Errorf("convert: want SRC DST, got %d arguments (see 'strata convert --help')", c.NArg())
	}
	format, err := convert.ParseFormat(c.String("format"))
	if err != nil {
		return err
	}
	platform, err := parsePlatform(c.String("platform"))
	if err != nil {
		return err
	}
	src, err := convert.ParseLocation(c.Args().Get(0), c.Bool("insecure"))
	if err != nil {
		return err
	}
	dst, err := convert.ParseLocation(c.Args().Get(1), c.Bool("insecure"))
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	img, err := convert.ReadImage(ctx, src, platform)
	if err != nil {
		return err
	}
	opts := []convert.Option{convert.WithFormat(format), convert.WithChunkSize(c.Int("chunk-size")),
		convert.WithProgress(newProgressPrinter())}
	if list := c.String("prioritize"); list != "" {
		data, err := os.ReadFile(list)
		if err != nil {
			return fmt.Errorf("convert: --prioritize: %w", err)
		}
		opts = append(opts, convert.WithPrioritized(strings.Split(string(data), "\n")))
	}
	res, err := convert.Convert(ctx, img, opts...)
	if err != nil {
		return err
	}
	defer res.Close()
	digest, err := convert.WriteImage(ctx, dst, res.Image)
	if err != nil {
		return err
	}
	fmt.Println(digest)
	return nil
}

func parsePlatform(s string) (v1.Platform, error) {
	if s == "" {
		return v1.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}, nil
	}
	p, err := v1.ParsePlatform(s)
	if err != nil {
		return v1.Platform{}, fmt.Errorf("convert: --platform %q: %w", s, err)
	}
	return *p, nil
}

// newProgressPrinter prints one line per layer on stderr when it is done,
// redrawn in place as bytes move when stderr is a terminal.
func newProgressPrinter() func(convert.Progress) {
	_, err := unix.IoctlGetTermios(int(os.Stderr.Fd()), unix.TCGETS)
	tty := err == nil
	return func(p convert.Progress) {
		if !p.Done && !tty {
			return
		}
		state := "…"
		switch {
		case p.Kept:
			state = "kept (already " + string(p.Format) + ")"
		case p.Done:
			state = string(p.Format) + " done"
		}
		line := fmt.Sprintf("layer %d/%d %s %s → %s %s", p.Index+1, p.Count, shortDigest(p.Source), size(p.BytesIn), size(p.BytesOut), state)
		end := "\n"
		if tty {
			line, end = "\r\033[K"+line, ""
			if p.Done {
				end = "\n"
			}
		}
		fmt.Fprint(os.Stderr, line+end)
	}
}

func shortDigest(d string) string {
	if alg, hex, ok := strings.Cut(d, ":"); ok && len(hex) > 12 {
		return alg + ":" + hex[:12] + "…"
	}
	return d
}

// size prints a byte count the way a person reads it: B, kB, MB or GB.
func size(n int64) string {
	switch {
	case n < 1e3:
		return fmt.Sprintf("%d B", n)
	case n < 1e6:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	case n < 1e9:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	}
	return fmt.Sprintf("%.2f GB", float64(n)/1e9)
}
