package bench

import (
	"errors"
	"strings"
	"testing"
)

func TestSummarize(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want Summary
	}{
		{[]float64{3, 1, 2}, Summary{Runs: 3, Median: 2, Min: 1, Max: 3}},
		{[]float64{4, 1, 3, 2}, Summary{Runs: 4, Median: 2.5, Min: 1, Max: 4}},
		{[]float64{7}, Summary{Runs: 1, Median: 7, Min: 7, Max: 7}},
	} {
		got, ok := Summarize(tc.in)
		if !ok || got != tc.want {
			t.Errorf("Summarize(%v) = %+v, %v; want %+v", tc.in, got, ok, tc.want)
		}
	}
	if _, ok := Summarize(nil); ok {
		t.Error("Summarize(nil) reported a summary")
	}
}

func TestReportRatiosAndTargets(t *testing.T) {
	r := &Report{Title: "t", Systems: []string{"peer", "subj"}, Subject: "subj", Peers: []string{"peer"},
		Targets: []*Target{
			{Text: "fast", Scenario: "walk", Peer: "peer", MaxRatio: 1.5},
			{Text: "faster", Scenario: "walk", Peer: "peer", MaxRatio: 1},
			{Text: "none", Scenario: "broken", Peer: "peer", MaxRatio: 1},
		}}
	walk := r.Scenario("walk", "a walk", 0)
	for _, v := range []float64{1, 2, 3} {
		walk.Record("peer", v, nil)
		walk.Record("subj", 1.2*v, nil)
	}
	broken := r.Scenario("broken", "fails", 0)
	broken.Record("peer", 1, nil)
	broken.Record("subj", 0, errors.New("boom"))
	r.Finish()

	if got := walk.Ratios["peer"]; got < 1.199 || got > 1.201 {
		t.Errorf("ratio = %v, want 1.2", got)
	}
	verdicts := []string{"pass", "FAIL", "no data"}
	for i, tg := range r.Targets {
		if tg.Verdict != verdicts[i] {
			t.Errorf("target %q: verdict %q, want %q", tg.Text, tg.Verdict, verdicts[i])
		}
	}
	md := r.Markdown()
	for _, want := range []string{"| walk | 2.00 (1.00–3.00) | 2.40 (1.20–3.60) | 1.20 |", "error [1 failed]", "broken on subj: boom"} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md)
		}
	}
}
