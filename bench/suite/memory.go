package suite

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/stratafs/strata/bench"
	"github.com/stratafs/strata/bench/images"
	"github.com/stratafs/strata/bench/peers"
)

// FilesMemory is strata's memory for many files, measured rather than
// divided: the peak RSS (VmHWM) of the strata process serving an image of
// many small files, against one serving a tiny image of the same shape,
// after one stage of work; the difference, per file, scaled to 100,000.
type FilesMemory struct {
	Stage     string  `json:"stage"`
	Image     string  `json:"image"`
	Files     int     `json:"files"`
	Tiny      string  `json:"tiny_image"`
	TinyFiles int     `json:"tiny_files"`
	PeakRSS   *Spread `json:"peak_rss_bytes"`
	TinyRSS   *Spread `json:"tiny_peak_rss_bytes"`
	// Per100k is (median − tiny median) / (files − tiny files) × 100,000,
	// in bytes: what 100,000 more files cost the process.
	Per100k float64 `json:"per_100k_files_bytes"`
}

// The stages after which the many-files mounts' peak RSS is read.
var memoryStages = []string{"after find -ls (lstat of every entry)", "after reading every file"}

// filesMemory mounts the many-files image and the tiny one with strata,
// Runs times each, interleaved: each on a fresh mount, upper and cache,
// registry on loopback. `find MNT -ls` stats every entry, then every file
// is read whole; the peak RSS is read after each.
func (r *runner) filesMemory(ctx context.Context) {
	rss := map[string]map[string][]float64{} // stage → image → samples
	for _, st := range memoryStages {
		rss[st] = map[string][]float64{}
	}
	pair := []*images.Image{r.tiny, r.many}
	for run := range r.o.Runs {
		for k := range pair {
			if ctx.Err() != nil {
				return
			}
			im := pair[(run+k)%len(pair)]
			peaks, err := r.filesMemoryOne(ctx, im, run)
			if err != nil {
				r.res.Errors = append(r.res.Errors, fmt.Sprintf("memory per 100,000 files: %s run %d: %v", im.Name, run+1, err))
				r.logf("memory run %d %s: ERROR %v", run+1, im.Name, err)
				continue
			}
			for i, st := range memoryStages {
				rss[st][im.Name] = append(rss[st][im.Name], float64(peaks[i]))
				// No entry count: the per-entry division would hide the
				// fixed cost this section takes out (see FilesMemory).
				row(&r.res.Memory, "Memory per file", st, "strata "+im.Name, 0).add("peak RSS", float64(peaks[i]))
			}
		}
	}
	for _, st := range memoryStages {
		fm := &FilesMemory{Stage: st, Image: r.many.Name, Files: r.many.Files, Tiny: r.tiny.Name, TinyFiles: r.tiny.Files,
			PeakRSS: spread(rss[st][r.many.Name]), TinyRSS: spread(rss[st][r.tiny.Name])}
		if fm.PeakRSS != nil && fm.TinyRSS != nil && fm.Files > fm.TinyFiles {
			fm.Per100k = (fm.PeakRSS.Median - fm.TinyRSS.Median) / float64(fm.Files-fm.TinyFiles) * 100_000
		}
		r.res.FilesMemory = append(r.res.FilesMemory, fm)
	}
}

// filesMemoryOne is one mount of im: the peak RSS after each stage.
func (r *runner) filesMemoryOne(ctx context.Context, im *images.Image, run int) ([]int64, error) {
	ctx, cancel := context.WithTimeout(ctx, r.o.Timeout)
	defer cancel()
	dir := filepath.Join(r.o.Work, "memory", fmt.Sprintf("run%d-%s", run, im.Name))
	defer r.remove(dir)
	if err := peers.DropCaches(); err != nil {
		return nil, err
	}
	m, err := r.localMount(ctx, lower{ref: r.reg.Ref(im.Name + ":" + images.ZstdChunked.Tag())}, sysStrata, dir)
	if err != nil {
		return nil, err
	}
	defer m.stop()
	stages := []func() (time.Duration, error){
		func() (time.Duration, error) { return bench.Time(ctx, "find", m.root, "-ls") },
		func() (time.Duration, error) {
			return bench.Shell(ctx, `find "$1" -type f -print0 | xargs -0 -r cat >/dev/null`, m.root)
		},
	}
	var peaks []int64
	for i, stage := range stages {
		d, err := stage()
		if err != nil {
			return nil, err
		}
		p, err := peers.PeakRSS(m.pid)
		if err != nil {
			return nil, err
		}
		r.logf("memory run %d %-10s %-40s %7.3f s, peak RSS %.1f MB", run+1, im.Name, memoryStages[i], d.Seconds(), float64(p)/1e6)
		peaks = append(peaks, p)
	}
	return peaks, m.stop()
}

func filesMemoryMarkdown(b *strings.Builder, fms []*FilesMemory) {
	if len(fms) == 0 {
		return
	}
	fmt.Fprintf(b, "\n## Memory per 100,000 files\n\nPeak RSS (VmHWM) of the strata process serving %s (%d files in nested directories, zstd:chunked, "+
		"registry on loopback) against one serving %s (%d files, the same shape), MB, median (min–max); each a fresh mount, upper and cache. "+
		"Per 100,000 files = (median − tiny median) / (files − tiny files) × 100,000.\n\n"+
		"| stage | %s | %s | per 100,000 files |\n|---|---|---|---|\n", fms[0].Image, fms[0].Files, fms[0].Tiny, fms[0].TinyFiles, fms[0].Image, fms[0].Tiny)
	mb := func(s *Spread) string {
		if s == nil {
			return "error"
		}
		return fmt.Sprintf("%.1f (%.1f–%.1f)", s.Median/1e6, s.Min/1e6, s.Max/1e6)
	}
	for _, fm := range fms {
		per := "–"
		if fm.PeakRSS != nil && fm.TinyRSS != nil {
			per = fmt.Sprintf("**%.1f MB**", fm.Per100k/1e6)
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s |\n", fm.Stage, mb(fm.PeakRSS), mb(fm.TinyRSS), per)
	}
}
