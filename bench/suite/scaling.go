package suite

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/stratafs/strata/bench"
	"github.com/stratafs/strata/bench/peers"
)

// scaling measures, for each count n, n containers of the same image
// started at once on one node, until every one has printed: full-pull
// pulls and extracts once and mounts n overlayfs; strata starts n mounts
// sharing one fresh cache directory, as a node's containers would.
func (r *runner) scaling(ctx context.Context, sec *bench.Report, l *linkEnv, run int) {
	for _, n := range r.o.sizes().scale {
		name := fmt.Sprintf("scale: %d containers", n)
		doc := fmt.Sprintf("%d containers of the image started at once from nothing local, until each has printed `python3 -c 'print(1)'`; "+
			"full-pull pulls once, strata's mounts share one cache", n)
		// stargz-snapshotter is measured on single starts only.
		for k := range coldSystems {
			if ctx.Err() != nil {
				return
			}
			sys := coldSystems[(run+k)%len(coldSystems)]
			dir := filepath.Join(r.o.Work, "scale", l.link.Name, fmt.Sprintf("run%d-%d-%s", run, n, slug(sys.name)))
			secs, err := r.scaleOne(ctx, l, sys, n, dir)
			sec.Scenario(name, doc, 0).Record(sys.name, secs, err)
			if err != nil {
				r.logf("%s run %d %s %s: ERROR %v", l.link, run+1, sys.name, name, err)
			} else {
				r.logf("%s run %d %-20s %-24s %7.3f s", l.link, run+1, sys.name, name, secs)
			}
			r.remove(dir)
		}
	}
}

func (r *runner) scaleOne(ctx context.Context, l *linkEnv, sys coldSystem, n int, dir string) (secs float64, err error) {
	ctx, cancel := context.WithTimeout(ctx, r.o.Timeout)
	defer cancel()
	if err := peers.DropCaches(); err != nil {
		return 0, err
	}
	ref := l.ref(r.cold.Name + ":" + sys.format.Tag())
	start := time.Now()
	var lowers []string
	if sys.name == sysFullPull {
		if lowers, err = peers.FullPull(ctx, ref, filepath.Join(dir, "layers")); err != nil {
			return 0, err
		}
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex // guards errs and stops
		errs []error

		stops []func() error
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := r.start(ctx, sys, ref, filepath.Join(dir, fmt.Sprint(i)), filepath.Join(dir, "cache"), lowers)
			if err == nil {
				mu.Lock()
				stops = append(stops, st.stop)
				mu.Unlock()
				_, err = peers.FirstOutput(ctx, st.mnt, start, "1\n", peers.PythonPrint...)
			}
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}()
	}
	wg.Wait()
	secs = time.Since(start).Seconds()
	for _, stop := range stops {
		errs = append(errs, stop())
	}
	return secs, errors.Join(errs...)
}
