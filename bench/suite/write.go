package suite

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/stratafs/strata/bench/netshape"
)

// write saves suite.json, suite.md and the plots in Out.
func (r *runner) write() error {
	for _, sec := range r.res.Sections {
		sec.Machine.LoadEnd = r.res.Machine.LoadEnd
	}
	for _, rows := range [][]*CountRow{r.res.Bytes, r.res.Memory} {
		for _, row := range rows {
			row.finish()
		}
	}
	if err := os.MkdirAll(r.o.Out, 0o755); err != nil {
		return err
	}
	plots, err := writePlots(r.res, r.o.Out)
	if err != nil {
		r.res.Errors = append(r.res.Errors, "plots: "+err.Error())
	}
	r.res.Plots = plots
	b, err := json.MarshalIndent(r.res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(r.o.Out, "suite.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	r.logf("wrote %s/suite.{json,md} and %d plots", r.o.Out, len(plots))
	return os.WriteFile(filepath.Join(r.o.Out, "suite.md"), []byte(r.res.Markdown()), 0o644)
}

// Markdown renders the whole result: setup, link checks, each section's
// times and ratios, bytes, memory, plots and errors.
func (r *Result) Markdown() string {
	var b strings.Builder
	mode := "full"
	if r.Quick {
		mode = "quick (smoke test: small image, one run)"
	}
	fmt.Fprintf(&b, "# strata benchmark suite\n\n- mode: %s; runs: %d; links: %s\n", mode, r.Runs, strings.Join(r.Links, ", "))
	for _, n := range r.NotRun {
		fmt.Fprintf(&b, "- %s\n", n)
	}
	r.imagesMarkdown(&b)
	r.linksMarkdown(&b)
	for _, sec := range r.Sections {
		b.WriteString("\n#" + sec.Markdown())
	}
	countsMarkdown(&b, "Bytes", "bytes fetched vs bytes read, MB, median (min–max). registry (relay) = what the registry sent through the link's relay "+
		"up to the first output (HTTP framing included); strata fetched/served = `strata stat --json` summed over layers one status refresh later "+
		"(background prefetch in that second included); read by the command = bytes the full read read.", r.Bytes, 1e6, "MB")
	countsMarkdown(&b, "Memory", "peak RSS (VmHWM) of the FUSE server process, MB, median (min–max). "+
		"The last column scales it to 100,000 entries of the image (peak / entries × 100,000): a fixed cost dominates a small image, so it is an upper bound there; "+
		"the next table measures the cost per file.", r.Memory, 1e6, "MB")
	filesMemoryMarkdown(&b, r.FilesMemory)
	if len(r.Plots) > 0 {
		b.WriteString("\n## Plots\n\n")
		for _, p := range r.Plots {
			fmt.Fprintf(&b, "![%s](%s)\n", p, p)
		}
	}
	if len(r.Errors) > 0 {
		b.WriteString("\n## Errors\n\n")
		for _, e := range r.Errors {
			fmt.Fprintf(&b, "- %s\n", strings.ReplaceAll(e, "\n", " | "))
		}
	}
	return b.String()
}

func (r *Result) imagesMarkdown(b *strings.Builder) {
	b.WriteString("\n## Images\n\n| image | used for | entries | files | unpacked | gzip | zstd | zstd:chunked | estargz |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, im := range r.Images {
		fmt.Fprintf(b, "| %s | %s | %d | %d | %.1f MB | %.1f MB | %.1f MB | %.1f MB | %.1f MB |\n", im.Name, im.Used, im.Entries, im.Files,
			float64(im.UnpackedBytes)/1e6, float64(im.Compressed["gzip"])/1e6, float64(im.Compressed["zstd"])/1e6,
			float64(im.Compressed["zstd-chunked"])/1e6, float64(im.Compressed["estargz"])/1e6)
	}
}

func (r *Result) linksMarkdown(b *strings.Builder) {
	b.WriteString("\n## Link check (curl through each link's relay, this session)\n\n" +
		"TTFB is curl's time_starttransfer on a new connection: the relay charges one RTT for the handshake and one for the request, so two RTTs is the floor.\n\n" +
		"| link | request | set RTT | set rate | TTFB | total | measured rate |\n|---|---|---|---|---|---|---|\n")
	for _, c := range r.LinkChecks {
		fmt.Fprintf(b, "| %s | %s | %.0f ms | %s | %s | %s | %.1f Mbit/s |\n", c.Link, c.Request, c.SetRTT*1e3,
			netshape.FormatRate(c.SetRate), msSpread(c.TTFB), msSpread(c.Total), c.Rate/1e6)
	}
}

func msSpread(s *Spread) string {
	if s == nil {
		return "error"
	}
	return fmt.Sprintf("%.1f ms (%.1f–%.1f)", s.Median*1e3, s.Min*1e3, s.Max*1e3)
}

func countsMarkdown(b *strings.Builder, title, doc string, rows []*CountRow, unit float64, unitName string) {
	if len(rows) == 0 {
		return
	}
	var keys []string
	for _, row := range rows {
		for k := range row.Samples {
			if !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	fmt.Fprintf(b, "\n## %s\n\n%s\n\n| section | scenario | system | %s |", title, doc, strings.Join(keys, " | "))
	perEntry := title == "Memory"
	if perEntry {
		b.WriteString(" per 100,000 entries |")
	}
	b.WriteString("\n|---|---|---|" + strings.Repeat("---|", len(keys)))
	if perEntry {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, row := range rows {
		fmt.Fprintf(b, "| %s | %s | %s |", row.Section, row.Scenario, row.System)
		for _, k := range keys {
			s := row.Spreads[k]
			if s == nil {
				b.WriteString(" – |")
				continue
			}
			fmt.Fprintf(b, " %.1f (%.1f–%.1f) |", s.Median/unit, s.Min/unit, s.Max/unit)
		}
		if perEntry {
			if s := row.Spreads["peak RSS"]; s != nil && row.Entries > 0 {
				fmt.Fprintf(b, " %.1f %s |", s.Median/unit*100000/float64(row.Entries), unitName)
			} else {
				b.WriteString(" – |")
			}
		}
		b.WriteString("\n")
	}
}
