package suite

import (
	"fmt"
	"strings"

	"github.com/stratafs/strata/bench"
)

// Result is one run of the suite, written as suite.json; suite.md and the
// plots are made from it.
type Result struct {
	Machine bench.Machine `json:"machine"`
	Quick   bool          `json:"quick"`
	Runs    int           `json:"runs"`
	Links   []string      `json:"links"`
	Images  []ImageInfo   `json:"images"`
	// LinkChecks is curl through each link's relay, from this session.
	LinkChecks []*LinkCheck `json:"link_checks"`
	// Sections are timed scenarios: one cold-start section per link, one
	// local section (warm reads, metadata, writes).
	Sections []*bench.Report `json:"sections"`
	Bytes    []*CountRow     `json:"bytes"`
	Memory   []*CountRow     `json:"memory"`
	// FilesMemory is the memory per 100,000 files, one entry per stage.
	FilesMemory []*FilesMemory `json:"files_memory,omitempty"`
	// NotRun names systems or scenarios left out, and why.
	NotRun []string `json:"not_run,omitempty"`
	Errors []string `json:"errors,omitempty"`
	Plots  []string `json:"plots,omitempty"`
}

// ImageInfo describes one image the suite used.
type ImageInfo struct {
	Name          string           `json:"name"`
	Entries       int              `json:"entries"`
	Files         int              `json:"files"`
	UnpackedBytes int64            `json:"unpacked_bytes"`
	Compressed    map[string]int64 `json:"compressed_bytes"` // per format tag
	Used          string           `json:"used_for"`
}

// Spread condenses repeated counts (bytes, not seconds) as bench.Summary
// condenses times.
type Spread struct {
	Runs   int     `json:"runs"`
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

func spread(v []float64) *Spread {
	s, ok := bench.Summarize(v)
	if !ok {
		return nil
	}
	return &Spread{Runs: s.Runs, Median: s.Median, Min: s.Min, Max: s.Max}
}

// CountRow is one counted quantity series (bytes, peak RSS) of one system
// in one scenario: named samples, each summarized.
type CountRow struct {
	Section  string               `json:"section"`
	Scenario string               `json:"scenario"`
	System   string               `json:"system"`
	Entries  int                  `json:"entries,omitempty"` // of the image, for per-100k figures
	Samples  map[string][]float64 `json:"samples"`
	Spreads  map[string]*Spread   `json:"spreads,omitempty"`
}

func (r *CountRow) add(key string, v float64) {
	if r.Samples == nil {
		r.Samples = map[string][]float64{}
	}
	r.Samples[key] = append(r.Samples[key], v)
}

func (r *CountRow) finish() {
	r.Spreads = map[string]*Spread{}
	for k, v := range r.Samples {
		r.Spreads[k] = spread(v)
	}
}

// row returns the row for (section, scenario, system), adding it.
func row(rows *[]*CountRow, section, scenario, system string, entries int) *CountRow {
	for _, r := range *rows {
		if r.Section == section && r.Scenario == scenario && r.System == system {
			return r
		}
	}
	r := &CountRow{Section: section, Scenario: scenario, System: system, Entries: entries}
	*rows = append(*rows, r)
	return r
}

// Missing lists every measurement that applies and has no clean result:
// a scenario result with an error or no sample, a system of a section
// with no result at all for a scenario it applies to, a failed link check.
// The smoke test requires it to be empty.
func (r *Result) Missing() []string {
	var out []string
	for _, sec := range r.Sections {
		for _, sc := range sec.Scenarios {
			for _, sys := range sec.Systems {
				res, ok := sc.Results[sys]
				switch {
				case !ok && applies(sc.Name, sys):
					out = append(out, fmt.Sprintf("%s / %s / %s: no result", sec.Title, sc.Name, sys))
				case ok && (len(res.Errors) > 0 || res.Summary == nil):
					out = append(out, fmt.Sprintf("%s / %s / %s: %v", sec.Title, sc.Name, sys, res.Errors))
				}
			}
		}
	}
	for _, c := range r.LinkChecks {
		if len(c.Errors) > 0 || c.Total == nil {
			out = append(out, fmt.Sprintf("link check %s %s: %v", c.Link, c.Request, c.Errors))
		}
	}
	return append(out, r.Errors...)
}

// applies says which system a scenario is measured on: every system of
// its section, except native for the copy-ups (a plain directory has
// nothing to copy up), stargz-snapshotter for the scaling scenarios (it
// is measured on single starts), and `ctr run` for the full read (a
// reader in a container is not the host reader every other system gets).
func applies(scenario, system string) bool {
	switch {
	case system == sysNative:
		return !strings.HasPrefix(scenario, "copy-up")
	case isStargz(system):
		return !strings.HasPrefix(scenario, "scale:") && !(system == sysStargzCtr && scenario == "full read")
	}
	return true
}
