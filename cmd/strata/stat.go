package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/stratafs/strata/status"
	"github.com/stratafs/strata/unionfs"
	"github.com/urfave/cli/v2"
)

func statCommand() *cli.Command {
	return &cli.Command{
		Name:      "stat",
		Usage:     "show what a running mount has fetched and served, per layer",
		ArgsUsage: "MOUNTPOINT",
		Description: "For each layer: its size in the image, the bytes fetched from the registry\n" +
			"(and the share of the layer that is), requests and retries, the file bytes\n" +
			"served to readers, chunk cache hits, and the last error. The figures come\n" +
			"from the mounting process, which updates them every second.\n\n" +
			"MOUNTPOINT may also be a container's root on strata-snapshotter (an overlayfs\n" +
			"whose top lower directory is one of its image mounts): the image's figures\n" +
			"are shown.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print the status as JSON"},
		},
		Action: runStat,
	}
}

func runStat(c *cli.Context) error {
	if c.NArg() != 1 {
		return fmt.Errorf("stat: want exactly one MOUNTPOINT, got %d arguments", c.NArg())
	}
	mnt := c.Args().First()
	m, err := status.Read(status.Dir(), mnt)
	if errors.Is(err, status.ErrNotMounted) {
		// A container's root on strata-snapshotter: the overlay's top lower
		// directory is the image's mount, which has the status.
		if abs, aerr := filepath.Abs(mnt); aerr == nil {
			if lower, lerr := unionfs.OverlayLower(abs); lerr == nil && lower != "" {
				if lm, lerr := status.Read(status.Dir(), lower); lerr == nil || errors.Is(lerr, status.ErrStale) {
					fmt.Fprintf(os.Stderr, "strata: stat: %s is an overlay on %s; showing that mount\n", mnt, lower)
					m, err = lm, lerr
				}
			}
		}
	}
	if errors.Is(err, status.ErrStale) {
		fmt.Fprintf(os.Stderr, "strata: stat: %v; showing its last status\n", err)
	} else if err != nil {
		return fmt.Errorf("stat: %w", err)
	}
	if m.SharedImage != "" {
		// The image's counters are those of the process that serves it.
		if o, err := status.Read(status.Dir(), m.SharedImage); err == nil {
			m.Layers, m.Cache = o.Layers, o.Cache
		}
	}
	if c.Bool("json") {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(m)
	}
	printStatus(m)
	return nil
}

func printStatus(m *status.Mount) {
	fmt.Printf("source   %s\nmount    %s (pid %d, up %s, updated %s ago)\n\n", m.Source, m.Mountpoint, m.PID,
		time.Since(m.Started).Round(time.Second), time.Since(m.Updated).Round(100*time.Millisecond))
	if m.SharedImage != "" {
		fmt.Printf("image    %s, served by the strata process that mounted the image first; its counters:\n\n", m.SharedImage)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "LAYER\tFORMAT\tSIZE\tFETCHED\tREQUESTS\tRETRIES\tSERVED\tHITS\tERRORS\t")
	var total status.Layer
	for _, l := range m.Layers {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%d\t%d\t\n", short(l.Name), l.Format, size(l.Size),
			fetched(l.BytesFetched, l.Size), l.Requests, l.Retries, size(l.BytesServed), l.ChunkHits, l.Errors)
		total.Size += l.Size
		total.BytesFetched += l.BytesFetched
		total.Requests += l.Requests
		total.Retries += l.Retries
		total.BytesServed += l.BytesServed
		total.ChunkHits += l.ChunkHits
		total.Errors += l.Errors
	}
	fmt.Fprintf(w, "total\t\t%s\t%s\t%d\t%d\t%s\t%d\t%d\t\n", size(total.Size), fetched(total.BytesFetched, total.Size),
		total.Requests, total.Retries, size(total.BytesServed), total.ChunkHits, total.Errors)
	w.Flush()
	for _, l := range m.Layers {
		if l.LastError != "" {
			fmt.Printf("\n%s last error: %s", short(l.Name), l.LastError)
		}
	}
	printCache(m.Cache)
}

// printCache shows the on-disk cache: its size for all processes, and what
// this mount did with it.
func printCache(c *status.Cache) {
	if c == nil {
		fmt.Println("\ncache    none (memory only)")
		return
	}
	used, limit := "unknown yet", "no cap"
	if c.Bytes >= 0 {
		used = fmt.Sprintf("%s in %d entries", size(c.Bytes), c.Entries)
	}
	if c.MaxSize > 0 {
		limit = "cap " + size(c.MaxSize)
	}
	fmt.Printf("\ncache    %s: %s, %s\n         this mount: %d hits, %d misses, %d stored, %d evicted (%s), %d corrupt\n",
		c.Dir, used, limit, c.Hits, c.Misses, c.Puts, c.Evictions, size(c.EvictedBytes), c.Corrupt)
}

func short(name string) string {
	if len(name) > 19 {
		return name[:19] + "…"
	}
	return name
}

func fetched(n, of int64) string {
	if of == 0 {
		return size(n)
	}
	return fmt.Sprintf("%s (%.1f%%)", size(n), 100*float64(n)/float64(of))
}
