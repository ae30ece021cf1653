package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/stratafs/strata/cache"
	"github.com/urfave/cli/v2"
)

func cacheCommand() *cli.Command {
	return &cli.Command{
		Name:  "cache",
		Usage: "list, measure and trim the on-disk cache of verified chunks and files",
		Description: "The cache holds, under DIR, every chunk a lazy mount has fetched and\n" +
			"verified (DIR/chunks) and whole lower files kept for passthrough reads\n" +
			"(DIR/files), each named by its digest, so that later reads and other mounts\n" +
			"need not fetch them again. Mounts given a size cap evict the least recently\n" +
			"used entries themselves; these commands inspect a cache and trim it by hand.\n" +
			"They are safe to run while mounts use the cache.",
		Subcommands: []*cli.Command{cacheLsCommand(), cacheDuCommand(), cacheGCCommand()},
	}
}

func cacheDirFlag() cli.Flag {
	return &cli.StringFlag{Name: "cache", Value: cache.DefaultDir, Usage: "the cache `DIR`"}
}

func cacheLsCommand() *cli.Command {
	return &cli.Command{
		Name:  "ls",
		Usage: "list the entries, least recently used first",
		Description: "Prints one line per entry: its kind (chunk or file), size, last use and\n" +
			"digest, least recently used first, which is the order eviction takes them in.\n" +
			"The last use is when a mount last read the entry (recorded to the minute), or\n" +
			"when it was stored.",
		Flags:  []cli.Flag{cacheDirFlag(), &cli.BoolFlag{Name: "json", Usage: "print a JSON array of {digest, kind, size, last_used, path}"}},
		Action: runCacheLs,
	}
}

func cacheDuCommand() *cli.Command {
	return &cli.Command{
		Name:  "du",
		Usage: "count the entries and bytes of each kind",
		Description: "Walks the whole cache (seconds on a million entries) and prints the entries\n" +
			"and bytes of chunks, of files, and in total, then the running estimate that\n" +
			"capped mounts evict by. Bytes are file sizes; the file system adds its block\n" +
			"rounding on top.",
		Flags:  []cli.Flag{cacheDirFlag(), &cli.BoolFlag{Name: "json", Usage: "print the counts as JSON"}},
		Action: runCacheDu,
	}
}

func cacheGCCommand() *cli.Command {
	return &cli.Command{
		Name:  "gc",
		Usage: "remove stale temp files, and as asked, corrupt entries and the least recently used",
		Description: "Always removes temp files that writers which died left behind (older than an\n" +
			"hour and not held open), and re-counts the cache to correct the estimate that\n" +
			"capped mounts evict by. With --verify it hashes every entry and removes those\n" +
			"whose bytes no longer match their digest. With --max-size it evicts the least\n" +
			"recently used entries until the cache holds at most SIZE bytes. It then prints\n" +
			"what it removed and what is left. Mounts may keep running: an entry a mount has\n" +
			"open stays readable to it, and entries stored while gc runs are kept.\n\n" +
			"SIZE is a number of bytes, optionally with a fraction and a unit: K, M, G, T,\n" +
			"P or KiB, MiB, GiB, TiB, PiB are powers of 1024; KB, MB, GB, TB, PB powers of\n" +
			"1000 (as in GNU coreutils).\n\n" +
			"Examples:\n" +
			"   strata cache gc --max-size 10G\n" +
			"   strata cache gc --verify --cache /srv/strata/cache",
		Flags: []cli.Flag{
			cacheDirFlag(),
			&cli.StringFlag{Name: "max-size", Usage: "evict least recently used entries down to `SIZE` (512M, 10G, 1.5GiB, 1073741824; 0 = no eviction)"},
			&cli.BoolFlag{Name: "verify", Usage: "hash every entry and remove the corrupt ones (reads the whole cache)"},
		},
		Action: runCacheGC,
	}
}

// openCache opens an existing cache for maintenance: it creates nothing,
// so a mistyped DIR is an error, not a new empty cache.
func openCache(c *cli.Context) (*cache.Store, error) {
	s, err := cache.Open(c.String("cache"), cache.WithCreate(false))
	if err != nil {
		return nil, fmt.Errorf("cache %s: %w", c.Command.Name, err)
	}
	return s, nil
}

func runCacheLs(c *cli.Context) error {
	if c.NArg() != 0 {
		return fmt.Errorf("cache ls: want no arguments, got %d (see 'strata cache ls --help')", c.NArg())
	}
	s, err := openCache(c)
	if err != nil {
		return err
	}
	var all []cache.Info
	err = s.Walk(c.Context, func(i cache.Info) error {
		all = append(all, i)
		return nil
	})
	if err != nil {
		return fmt.Errorf("cache ls: %w", err)
	}
	slices.SortFunc(all, func(a, b cache.Info) int {
		return cmp.Or(a.LastUsed.Compare(b.LastUsed), cmp.Compare(a.Digest, b.Digest))
	})
	if c.Bool("json") {
		if all == nil {
			all = []cache.Info{}
		}
		return printJSON(all)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "KIND\tSIZE\tLAST USED\tDIGEST")
	for _, i := range all {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", i.Kind, size(i.Size), i.LastUsed.Format(time.DateTime), i.Digest)
	}
	return w.Flush()
}

// duReport is what du prints.
type duReport struct {
	Chunks cache.KindUsage `json:"chunks"`
	Files  cache.KindUsage `json:"files"`
	Total  cache.KindUsage `json:"total"`
	// Estimate is the usage record capped mounts evict by; null until a
	// scan has reconciled it.
	Estimate *cache.KindUsage `json:"estimate"`
}

func runCacheDu(c *cli.Context) error {
	if c.NArg() != 0 {
		return fmt.Errorf("cache du: want no arguments, got %d (see 'strata cache du --help')", c.NArg())
	}
	s, err := openCache(c)
	if err != nil {
		return err
	}
	u, err := s.Usage(c.Context)
	if err != nil {
		return fmt.Errorf("cache du: %w", err)
	}
	r := duReport{Chunks: u.Chunks, Files: u.Files, Total: u.Total()}
	if st := s.Stats(); st.Bytes >= 0 {
		r.Estimate = &cache.KindUsage{Entries: st.Entries, Bytes: st.Bytes}
	}
	if c.Bool("json") {
		return printJSON(r)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "KIND\tENTRIES\tBYTES\t\t")
	for _, row := range []struct {
		name string
		u    cache.KindUsage
	}{{"chunk", r.Chunks}, {"file", r.Files}, {"total", r.Total}} {
		fmt.Fprintf(w, "%s\t%d\t%d\t%s\t\n", row.name, row.u.Entries, row.u.Bytes, size(row.u.Bytes))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if r.Estimate == nil {
		fmt.Println("\nestimate: unknown until a mount with a size cap or 'strata cache gc' re-counts the cache")
	} else {
		fmt.Printf("\nestimate: %d entries, %s (what capped mounts evict by)\n", r.Estimate.Entries, size(r.Estimate.Bytes))
	}
	return nil
}

func runCacheGC(c *cli.Context) error {
	if c.NArg() != 0 {
		return fmt.Errorf("cache gc: want no arguments, got %d (see 'strata cache gc --help')", c.NArg())
	}
	var opts cache.GCOptions
	if v := c.String("max-size"); v != "" {
		n, err := cache.ParseSize(v)
		if err != nil {
			return fmt.Errorf("cache gc: --max-size: %w", err)
		}
		opts.MaxSize = n
	}
	opts.Verify = c.Bool("verify")
	s, err := openCache(c)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := s.GC(ctx, opts)
	printGC(res, opts)
	if err != nil {
		return fmt.Errorf("cache gc: %w", err)
	}
	return nil
}

func printGC(res cache.GCResult, opts cache.GCOptions) {
	fmt.Printf("removed %d stale temp files (%s)\n", res.TempFiles, size(res.TempBytes))
	if opts.Verify {
		fmt.Printf("removed %d corrupt entries (%s)\n", res.Corrupt, size(res.CorruptBytes))
	}
	if opts.MaxSize > 0 {
		fmt.Printf("evicted %d entries (%s) to get under %s (%d bytes)\n", res.Evicted, size(res.EvictedBytes), size(opts.MaxSize), opts.MaxSize)
	}
	t := res.After.Total()
	fmt.Printf("left %d entries (%s): %d chunks (%s), %d files (%s)\n", t.Entries, size(t.Bytes),
		res.After.Chunks.Entries, size(res.After.Chunks.Bytes), res.After.Files.Entries, size(res.After.Files.Bytes))
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
