package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/stratafs/strata/bench"
)

// coldReport is bench.Report plus what its tables cannot hold: bytes
// fetched per system and every run's raw figures.
type coldReport struct {
	*bench.Report
	Bytes []bytesRow `json:"bytes"`
	Runs  []runRow   `json:"runs"`
	Seq   []seqRow   `json:"sequential_read,omitempty"`
}

type bytesRow struct {
	System     string  `json:"system"`
	ImageBytes int64   `json:"image_bytes"`
	Fetched    summary `json:"fetched_bytes"`
	Served     summary `json:"served_bytes,omitzero"`
	Registry   summary `json:"registry_bytes"`
	Requests   summary `json:"requests,omitzero"`
}

// summary is bench.Summary over byte or request counts.
type summary struct {
	Runs   int     `json:"runs"`
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

type runRow struct {
	System   string  `json:"system"`
	Run      int     `json:"run"`
	ReadyS   float64 `json:"ready_s,omitempty"`
	FirstS   float64 `json:"first_output_s,omitempty"`
	Fetched  int64   `json:"fetched_bytes,omitempty"`
	Served   int64   `json:"served_bytes,omitempty"`
	Registry int64   `json:"registry_bytes,omitempty"`
	Requests int64   `json:"requests,omitempty"`
	FullS    float64 `json:"full_read_s,omitempty"`
	SecondS  float64 `json:"second_start_s,omitempty"`
	ReadB    int64   `json:"full_read_bytes,omitempty"`
	RegFull  int64   `json:"registry_bytes_full_read,omitempty"`
	Load1    string  `json:"load1"`
	Error    string  `json:"error,omitempty"`
}

const (
	firstDoc = "from nothing local to the first line printed by `chroot MNT python3 -c 'print(1)'`; " +
		"strata = `strata mount` of the %s tag, full-pull = pull + extract every layer + mount overlayfs " +
		"(the same full-pull samples appear in both first-output rows)"
	secondDoc = "a second container of the same image on the same node, from its mount to the first output of print(1), " +
		"the first one still up: strata = a new `strata mount` of the %s tag on the cache the first filled, " +
		"full-pull = a new overlayfs mount over the layers already extracted"
	fullDoc = "from nothing local until every regular file of the image has been read whole, one at a time " +
		"(after the first output, on the same mount; the second start, timed in between, is left out): strata = %s tag with a fresh --cache, " +
		"full-pull = pull + extract + overlayfs"
	readyDoc = "from nothing local until the mount exists (strata: the mountpoint in mountinfo, TOCs fetched; " +
		"full-pull: every layer pulled and extracted, overlayfs mounted), %s tag for strata"
)

func (b *benchmark) report() *coldReport {
	r := &bench.Report{Title: "Cold start: python3 -c 'print(1)' from a registry on loopback",
		Machine: b.machine, Systems: []string{"strata", "full-pull"}, Subject: "strata", Peers: []string{"full-pull"}}
	for _, n := range b.setupNotes {
		r.Setup = append(r.Setup, bench.Field{Key: n[0], Value: n[1]})
	}
	r.Setup = append(r.Setup, bench.Field{Key: "runs", Value: fmt.Sprintf("%d per system, interleaved, sync + drop_caches before each", b.opts.runs)})
	if len(b.opts.mountArgs) > 0 {
		r.Setup = append(r.Setup, bench.Field{Key: "strata mount flags", Value: "`" + strings.Join(b.opts.mountArgs, " ") + "`"})
	}
	for _, f := range systems[1:] {
		first := r.Scenario("first-output "+f, fmt.Sprintf(firstDoc, f), 0)
		ready := r.Scenario("mounted "+f, fmt.Sprintf(readyDoc, f), 0)
		var full, second *bench.Scenario
		if b.opts.second {
			second = r.Scenario("second-start "+f, fmt.Sprintf(secondDoc, f), 0)
			r.Targets = append(r.Targets, &bench.Target{Text: "second container start as fast as overlayfs (" + f + ")",
				Scenario: "second-start " + f, Peer: "full-pull", MaxRatio: 1.0})
		}
		if b.opts.fullRead {
			full = r.Scenario("full-read "+f, fmt.Sprintf(fullDoc, f), 0)
			r.Targets = append(r.Targets, &bench.Target{Text: "reading the whole image ≤ 1.2x full pull (" + f + ")",
				Scenario: "full-read " + f, Peer: "full-pull", MaxRatio: 1.2})
		}
		for _, s := range b.runs {
			col := "strata"
			if s.System == "full-pull" {
				col = "full-pull"
			} else if s.System != f {
				continue
			}
			first.Record(col, s.first.Seconds(), s.err)
			ready.Record(col, s.ready.Seconds(), s.err)
			if full != nil {
				full.Record(col, s.full.Seconds(), s.err)
			}
			if second != nil {
				second.Record(col, s.second.Seconds(), s.err)
			}
		}
		r.Targets = append(r.Targets, &bench.Target{Text: "time to first output ≤ 0.25x full pull (" + f + ")",
			Scenario: "first-output " + f, Peer: "full-pull", MaxRatio: 0.25})
	}
	r.Finish()
	c := &coldReport{Report: r, Bytes: b.bytesRows(), Runs: b.runRows()}
	if b.opts.seq {
		c.Seq = b.seqRows()
	}
	return c
}

func (b *benchmark) bytesRows() []bytesRow {
	var rows []bytesRow
	for _, sys := range systems {
		var fetched, served, reg, reqs []float64
		for _, s := range b.runs {
			if s.System == sys && s.err == nil {
				fetched = append(fetched, float64(s.fetched))
				served = append(served, float64(s.served))
				reg = append(reg, float64(s.registry))
				reqs = append(reqs, float64(s.requests))
			}
		}
		row := bytesRow{System: sys, ImageBytes: b.imageBytes[sys], Fetched: summarize(fetched), Registry: summarize(reg)}
		if sys != "full-pull" {
			row.Served, row.Requests = summarize(served), summarize(reqs)
		}
		rows = append(rows, row)
	}
	return rows
}

func summarize(v []float64) summary {
	s, _ := bench.Summarize(v)
	return summary{Runs: s.Runs, Median: s.Median, Min: s.Min, Max: s.Max}
}

func (b *benchmark) runRows() []runRow {
	rows := make([]runRow, 0, len(b.runs))
	for _, s := range b.runs {
		row := runRow{System: s.System, Run: s.Run, ReadyS: s.ready.Seconds(), FirstS: s.first.Seconds(),
			Fetched: s.fetched, Served: s.served, Registry: s.registry, Requests: s.requests, Load1: s.load,
			FullS: s.full.Seconds(), ReadB: s.readBytes, RegFull: s.registryFull, SecondS: s.second.Seconds()}
		if s.err != nil {
			row.Error = s.err.Error()
		}
		rows = append(rows, row)
	}
	return rows
}

func (c *coldReport) markdown() string {
	var sb strings.Builder
	sb.WriteString(c.Report.Markdown())
	sb.WriteString("\nBytes fetched from the registry, median of the successful runs (min–max). " +
		"\"registry\" is the registry's own count of blob bytes sent up to the first output, what the command cost. " +
		"\"fetched\" is the whole run's: strata's sum of `bytes_fetched` over layers from `strata stat --json` " +
		"(read 1.1 s after the full read, so it includes the background prefetch), full-pull's blob bytes.\n\n")
	sb.WriteString("| system | image (compressed) | fetched | fetched / image | registry | served to readers | requests |\n")
	sb.WriteString("| --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range c.Bytes {
		pct := "–"
		if r.ImageBytes > 0 && r.Fetched.Runs > 0 {
			pct = fmt.Sprintf("%.1f%%", 100*r.Fetched.Median/float64(r.ImageBytes))
		}
		fmt.Fprintf(&sb, "| %s | %.1f MB | %s | %s | %s | %s | %s |\n", r.System, mb(r.ImageBytes),
			mbRange(r.Fetched), pct, mbRange(r.Registry), mbRange(r.Served), countRange(r.Requests))
	}
	sb.WriteString(seqMarkdown(c.Seq))
	return sb.String()
}

func mbRange(s summary) string {
	if s.Runs == 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f MB (%.1f–%.1f)", s.Median/1e6, s.Min/1e6, s.Max/1e6)
}

func countRange(s summary) string {
	if s.Runs == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f (%.0f–%.0f)", s.Median, s.Min, s.Max)
}

func (b *benchmark) write() error {
	c := b.report()
	c.Machine.LoadEnd = bench.LoadAvg()
	if err := os.MkdirAll(b.opts.out, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	base := filepath.Join(b.opts.out, "coldstart")
	if err := os.WriteFile(base+".json", append(js, '\n'), 0o644); err != nil {
		return err
	}
	md := c.markdown()
	if err := os.WriteFile(base+".md", []byte(md), 0o644); err != nil {
		return err
	}
	fmt.Print(md)
	progress("wrote %s.{json,md}", base)
	return nil
}
