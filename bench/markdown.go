package bench

import (
	"fmt"
	"os"
	"strings"
)

// Markdown renders the report: setup, one table of times with the ratios,
// throughput for the bulk scenarios, target verdicts and every error.
func (r *Report) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n\n", r.Title)
	r.Machine.markdown(&b)
	for _, f := range r.Setup {
		fmt.Fprintf(&b, "- %s: %s\n", f.Key, f.Value)
	}
	b.WriteString("\nSeconds, median of the successful runs (min–max). " +
		"Ratios are " + r.Subject + " time / peer time: below 1 means " + r.Subject + " is faster.\n\n")
	r.timesTable(&b)
	r.throughputTable(&b)
	r.targetsTable(&b)
	r.scenarioDocs(&b)
	r.errorList(&b)
	return b.String()
}

// WriteMarkdown writes Markdown() to path.
func (r *Report) WriteMarkdown(path string) error {
	return os.WriteFile(path, []byte(r.Markdown()), 0o644)
}

func (r *Report) timesTable(b *strings.Builder) {
	head := append([]string{"scenario"}, r.Systems...)
	for _, p := range r.Peers {
		head = append(head, r.Subject+"/"+p)
	}
	for _, a := range r.Also {
		for _, p := range r.Peers {
			head = append(head, a+"/"+p)
		}
	}
	row(b, head...)
	row(b, strings.Split(strings.Repeat("---,", len(head)-1)+"---", ",")...)
	for _, s := range r.Scenarios {
		cells := []string{s.Name}
		for _, sys := range r.Systems {
			cells = append(cells, cell(s.Results[sys]))
		}
		for _, p := range r.Peers {
			cells = append(cells, ratioCell(s.Ratios, p))
		}
		for _, a := range r.Also {
			for _, p := range r.Peers {
				cells = append(cells, ratioCell(s.Ratios, a+"/"+p))
			}
		}
		row(b, cells...)
	}
}

func (r *Report) throughputTable(b *strings.Builder) {
	head := append([]string{"scenario (MB/s, median)"}, r.Systems...)
	started := false
	for _, s := range r.Scenarios {
		if s.Bytes == 0 {
			continue
		}
		if !started {
			b.WriteString("\n")
			row(b, head...)
			row(b, strings.Split(strings.Repeat("---,", len(head)-1)+"---", ",")...)
			started = true
		}
		cells := []string{s.Name}
		for _, sys := range r.Systems {
			c := "–"
			if res := s.Results[sys]; res != nil && res.Summary != nil && res.Summary.Median > 0 {
				c = fmt.Sprintf("%.0f", float64(s.Bytes)/res.Summary.Median/1e6)
			}
			cells = append(cells, c)
		}
		row(b, cells...)
	}
}

func (r *Report) targetsTable(b *strings.Builder) {
	if len(r.Targets) == 0 {
		return
	}
	b.WriteString("\nTargets:\n\n")
	row(b, "target", "ratio", "bound", "verdict")
	row(b, "---", "---", "---", "---")
	for _, t := range r.Targets {
		ratio := "–"
		if t.Ratio != nil {
			ratio = fmt.Sprintf("%.2f", *t.Ratio)
		}
		row(b, t.Text, ratio, fmt.Sprintf("≤ %.2f", t.MaxRatio), t.Verdict)
	}
}

func (r *Report) scenarioDocs(b *strings.Builder) {
	b.WriteString("\nScenarios:\n\n")
	for _, s := range r.Scenarios {
		fmt.Fprintf(b, "- `%s`: %s\n", s.Name, s.Doc)
	}
}

func (r *Report) errorList(b *strings.Builder) {
	var lines []string
	lines = append(lines, r.Errors...)
	for _, s := range r.Scenarios {
		for _, sys := range r.Systems {
			if res := s.Results[sys]; res != nil {
				for _, e := range res.Errors {
					lines = append(lines, fmt.Sprintf("%s on %s: %s", s.Name, sys, e))
				}
			}
		}
	}
	if len(lines) == 0 {
		return
	}
	b.WriteString("\nErrors:\n\n")
	for _, l := range lines {
		fmt.Fprintf(b, "- %s\n", strings.ReplaceAll(l, "\n", " | "))
	}
}

func cell(res *Result) string {
	if res == nil {
		return "–"
	}
	c := "error"
	if s := res.Summary; s != nil {
		c = fmt.Sprintf("%s (%s–%s)", secs(s.Median), secs(s.Min), secs(s.Max))
	}
	if n := len(res.Errors); n > 0 {
		c += fmt.Sprintf(" [%d failed]", n)
	}
	return c
}

// secs keeps three significant figures, enough for run-to-run noise.
func secs(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	case v >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

func ratioCell(ratios map[string]float64, peer string) string {
	if v, ok := ratios[peer]; ok {
		return fmt.Sprintf("%.2f", v)
	}
	return "–"
}

func row(b *strings.Builder, cells ...string) {
	b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
}
