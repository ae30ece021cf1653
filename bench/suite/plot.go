package suite

import (
	"fmt"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// writePlots draws, for each section, the subject/peer time ratio of
// every scenario as grouped bars with a line at 1 (below it, strata is
// faster), and returns the PNG file names written in dir.
func writePlots(r *Result, dir string) ([]string, error) {
	var names []string
	for i, sec := range r.Sections {
		if len(sec.Scenarios) == 0 {
			continue
		}
		p := plot.New()
		p.Title.Text = sec.Title
		p.Y.Label.Text = sec.Subject + " time / peer time"
		p.Legend.Top = true
		labels := make([]string, len(sec.Scenarios))
		for k, sc := range sec.Scenarios {
			labels[k] = sc.Name
		}
		w := vg.Points(60 / float64(len(sec.Peers)+1))
		for j, peer := range sec.Peers {
			vals := make(plotter.Values, len(sec.Scenarios))
			for k, sc := range sec.Scenarios {
				vals[k] = sc.Ratios[peer] // 0 (no bar) when there is no ratio
			}
			bars, err := plotter.NewBarChart(vals, w)
			if err != nil {
				return names, err
			}
			bars.Color = plotutil.Color(j)
			bars.LineStyle.Width = 0
			bars.Offset = w * vg.Length(float64(j)-float64(len(sec.Peers)-1)/2)
			p.Add(bars)
			p.Legend.Add("/ "+peer, bars)
		}
		one, err := plotter.NewLine(plotter.XYs{{X: -0.5, Y: 1}, {X: float64(len(labels)) - 0.5, Y: 1}})
		if err != nil {
			return names, err
		}
		one.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		p.Add(one)
		p.Y.Max *= 1.25 // room for the legend above the tallest bar
		p.NominalX(labels...)
		p.X.Tick.Label.Rotation = 0.5
		p.X.Tick.Label.XAlign, p.X.Tick.Label.YAlign = -1, -0.5
		name := fmt.Sprintf("suite-%d-%s.png", i+1, slug(sec.Title))
		if err := p.Save(vg.Length(max(6, len(labels)))*vg.Inch, 5*vg.Inch, filepath.Join(dir, name)); err != nil {
			return names, fmt.Errorf("save %s: %w", name, err)
		}
		names = append(names, name)
	}
	return names, nil
}
