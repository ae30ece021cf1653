package bench

import "slices"

// Summary condenses the repeated timings of one scenario on one system.
// The median is the figure quoted; min and max show the spread so a reader
// can tell a real difference from noise.
type Summary struct {
	Runs   int     `json:"runs"`
	Median float64 `json:"median_s"`
	Min    float64 `json:"min_s"`
	Max    float64 `json:"max_s"`
}

// Summarize returns the summary of secs, or false when there is no sample.
// With an even count the median is the mean of the two middle samples.
func Summarize(secs []float64) (Summary, bool) {
	if len(secs) == 0 {
		return Summary{}, false
	}
	s := slices.Clone(secs)
	slices.Sort(s)
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return Summary{Runs: n, Median: med, Min: s[0], Max: s[n-1]}, true
}
