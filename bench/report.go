package bench

import (
	"encoding/json"
	"fmt"
	"os"
)

// Report is one benchmark run: every system measured on the same inputs in
// the same process run, so that ratios between them are meaningful even on
// a noisy machine. Times are seconds; a ratio is subject time over peer
// time, so below 1 means the subject is faster.
type Report struct {
	Title   string   `json:"title"`
	Machine Machine  `json:"machine"`
	Setup   []Field  `json:"setup"`
	Systems []string `json:"systems"`
	Subject string   `json:"subject"`
	Peers   []string `json:"peers"`
	// Also are more systems compared with every peer: their ratios are
	// kept under "SYSTEM/PEER" (the subject's under the peer's name).
	Also      []string    `json:"also,omitempty"`
	Scenarios []*Scenario `json:"scenarios"`
	Targets   []*Target   `json:"targets"`
	// Errors are failures outside any one measurement (a system that could
	// not be set up at all, a failed unmount).
	Errors []string `json:"errors,omitempty"`
}

// Field is one line of setup description, kept in order for the Markdown.
type Field struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Scenario is one measured operation and its results per system.
type Scenario struct {
	Name string `json:"name"`
	Doc  string `json:"doc"`
	// Bytes moved by one run, for scenarios quoted as throughput too.
	Bytes   int64              `json:"bytes,omitempty"`
	Results map[string]*Result `json:"results"`
	// Ratios maps each peer to subject median / peer median.
	Ratios map[string]float64 `json:"ratios,omitempty"`
}

// Result holds every sample of one scenario on one system; a run that
// failed adds an error instead of a sample, so Summary.Runs tells how many
// of the requested runs succeeded.
type Result struct {
	Samples []float64 `json:"samples_s"`
	Summary *Summary  `json:"summary,omitempty"`
	Errors  []string  `json:"errors,omitempty"`
}

// Target is a goal stated as a bound on one ratio.
type Target struct {
	Text     string   `json:"text"`
	Scenario string   `json:"scenario"`
	Peer     string   `json:"peer"`
	MaxRatio float64  `json:"max_ratio"`
	Ratio    *float64 `json:"ratio,omitempty"`
	Verdict  string   `json:"verdict"` // pass, FAIL or "no data"
}

// Scenario returns the named scenario, adding it on first use.
func (r *Report) Scenario(name, doc string, bytes int64) *Scenario {
	for _, s := range r.Scenarios {
		if s.Name == name {
			return s
		}
	}
	s := &Scenario{Name: name, Doc: doc, Bytes: bytes, Results: map[string]*Result{}}
	r.Scenarios = append(r.Scenarios, s)
	return s
}

// Record adds one run's outcome: a sample when err is nil, else the error.
func (s *Scenario) Record(system string, secs float64, err error) {
	res := s.Results[system]
	if res == nil {
		res = &Result{}
		s.Results[system] = res
	}
	if err != nil {
		res.Errors = append(res.Errors, err.Error())
		return
	}
	res.Samples = append(res.Samples, secs)
}

// Finish computes summaries, ratios and target verdicts from the samples.
func (r *Report) Finish() {
	for _, s := range r.Scenarios {
		for _, res := range s.Results {
			if sum, ok := Summarize(res.Samples); ok {
				res.Summary = &sum
			}
		}
		s.Ratios = map[string]float64{}
		for _, p := range r.Peers {
			if v, ok := r.ratio(s, r.Subject, p); ok {
				s.Ratios[p] = v
			}
			for _, a := range r.Also {
				if v, ok := r.ratio(s, a, p); ok {
					s.Ratios[a+"/"+p] = v
				}
			}
		}
	}
	for _, t := range r.Targets {
		t.Ratio, t.Verdict = nil, "no data"
		if s := r.find(t.Scenario); s != nil {
			if v, ok := s.Ratios[t.Peer]; ok {
				t.Ratio = &v
				t.Verdict = "pass"
				if v > t.MaxRatio {
					t.Verdict = "FAIL"
				}
			}
		}
	}
}

func (r *Report) ratio(s *Scenario, subject, peer string) (float64, bool) {
	a, b := s.Results[subject], s.Results[peer]
	if a == nil || b == nil || a.Summary == nil || b.Summary == nil || b.Summary.Median == 0 {
		return 0, false
	}
	return a.Summary.Median / b.Summary.Median, true
}

func (r *Report) find(name string) *Scenario {
	for _, s := range r.Scenarios {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
