package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/stratafs/strata/bench"
	"github.com/stratafs/strata/bench/netshape"
)

// report is linkcheck's result, written as Markdown and JSON.
type report struct {
	Machine bench.Machine `json:"machine"`
	URL     string        `json:"url"`
	Size    int64         `json:"size"`
	Runs    int           `json:"runs"`
	Rows    []row         `json:"rows"`
}

// row is one request on one link: what the link is set to and what curl
// measured through it.
type row struct {
	Link         string         `json:"link"`
	Request      string         `json:"request"`
	Bytes        int64          `json:"bytes"`
	RTT          float64        `json:"set_rtt_s"`
	ExpectedTTFB float64        `json:"expected_ttfb_s"` // handshake + request: two RTTs
	Rate         int64          `json:"set_rate_bps"`    // 0: unlimited
	TTFB         *bench.Summary `json:"ttfb,omitempty"`
	Total        *bench.Summary `json:"total,omitempty"`
	MeasuredRate float64        `json:"measured_rate_bps,omitempty"` // bytes / median total time
	Errors       []string       `json:"errors,omitempty"`

	ttfbs, totals []float64
}

func newRow(l netshape.Link, request string, n int64) row {
	return row{Link: l.String(), Request: request, Bytes: n, RTT: l.RTT.Seconds(),
		ExpectedTTFB: (2 * l.RTT).Seconds(), Rate: l.Rate}
}

// add records one run: its timing, or the error in its place.
func (r *row) add(t netshape.Timing, err error) {
	if err != nil {
		r.Errors = append(r.Errors, err.Error())
		return
	}
	r.ttfbs = append(r.ttfbs, t.TTFB)
	r.totals = append(r.totals, t.Total)
}

func (r *row) summarize() {
	if s, ok := bench.Summarize(r.ttfbs); ok {
		r.TTFB = &s
	}
	if s, ok := bench.Summarize(r.totals); ok {
		r.Total = &s
		r.MeasuredRate = float64(r.Bytes) * 8 / s.Median
	}
}

func (rep *report) markdown() string {
	var b strings.Builder
	m := rep.Machine
	fmt.Fprintf(&b, "# Shaped links, measured with curl\n\n")
	fmt.Fprintf(&b, "- date: %s; kernel %s; %d × %s; load %s / %s\n", m.Date, m.Kernel, m.CPUs, m.CPUModel, m.LoadStart, m.LoadEnd)
	fmt.Fprintf(&b, "- %s\n- blob: %s (%s); median of %d runs (min–max), each a new curl process and connection; links take turns within each run\n\n",
		m.Tools["curl"], rep.URL, sizeName(rep.Size), rep.Runs)
	b.WriteString("| link | request | set RTT | expected TTFB | measured TTFB | set rate | measured rate |\n")
	b.WriteString("|---|---|---|---|---|---|---|\n")
	var errs []string
	for _, r := range rep.Rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", r.Link, r.Request, ms(r.RTT), ms(r.ExpectedTTFB),
			summaryMS(r.TTFB), netshape.FormatRate(r.Rate), mbits(r.MeasuredRate))
		for _, e := range r.Errors {
			errs = append(errs, fmt.Sprintf("%s %s: %s", r.Link, r.Request, e))
		}
	}
	b.WriteString("\nTTFB is curl's time_starttransfer from a new connection: the relay charges one RTT for the" +
		" handshake and one for the request, so two RTTs is the floor. Measured rate is bytes / median total time;" +
		" for small ranges it is bound by the RTTs, not the link. The relay does not model TCP slow start" +
		" (see bench/netshape's doc). The direct rows bypass the relay: the floor for loopback.\n")
	if len(errs) > 0 {
		b.WriteString("\nErrors:\n\n")
		for _, e := range errs {
			fmt.Fprintf(&b, "- %s\n", strings.ReplaceAll(e, "\n", " | "))
		}
	}
	return b.String()
}

// write saves linkcheck.md and linkcheck.json in dir; "" writes nothing.
func (rep *report) write(dir string) error {
	if dir == "" {
		return nil
	}
	j, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "linkcheck.json"), append(j, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "linkcheck.md"), []byte(rep.markdown()), 0o644)
}

func ms(s float64) string {
	return fmt.Sprintf("%.1f ms", s*1e3)
}

func summaryMS(s *bench.Summary) string {
	if s == nil {
		return "error"
	}
	return fmt.Sprintf("%.1f ms (%.1f–%.1f)", s.Median*1e3, s.Min*1e3, s.Max*1e3)
}

func mbits(bps float64) string {
	if bps == 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f Mbit/s", bps/1e6)
}
