package suite

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/stratafs/strata/bench"
	"github.com/stratafs/strata/bench/images"
)

// stepCopyUpGiB is the copy-up of the 1 GiB lower file; its own mount, so
// it is no localStep.
const stepCopyUpGiB = "copy-up 1 GiB"

// copyUpGiB measures, on a fresh mount of the 1 GiB file's image, the
// copy-up of the whole file and its fsync, caused by overwriting one byte
// in place. The file is read once first, untimed: strata has then fetched
// it, and every system has it in the page cache, as in the local steps'
// copy-up of the image's largest file.
func (r *runner) copyUpGiB(ctx context.Context, sec *bench.Report, gib lower, sys string, run int) {
	ctx, cancel := context.WithTimeout(ctx, r.o.Timeout)
	defer cancel()
	dir := filepath.Join(r.o.Work, "local", fmt.Sprintf("run%d-%s-gib", run, slug(sys)))
	s := sec.Scenario(stepCopyUpGiB, fmt.Sprintf("overwrite 1 byte of /%s (1 GiB, the only file of %s, read once untimed) "+
		"in place with `dd conv=notrunc,fsync`: the whole file is copied into the upper and synced", images.BigFilePath, images.BigFile), 1<<30)
	m, err := r.localMount(ctx, gib, sys, dir)
	if err != nil {
		s.Record(sys, 0, fmt.Errorf("mount: %w", err))
		r.remove(dir)
		return
	}
	file := filepath.Join(m.root, images.BigFilePath)
	secs, err := r.localStep(ctx, localStep{
		prepare: func(ctx context.Context, m *localMount) error {
			_, err := bench.Shell(ctx, `cat "$1" >/dev/null`, file)
			return err
		},
		run: func(ctx context.Context, m *localMount) (time.Duration, error) {
			return bench.Time(ctx, "dd", "if=/dev/zero", "of="+file, "bs=1", "count=1", "conv=notrunc,fsync")
		},
	}, m)
	s.Record(sys, secs, err)
	if err != nil {
		r.logf("local run %d %s %s: ERROR %v", run+1, sys, stepCopyUpGiB, err)
	} else {
		r.logf("local run %d %-15s %-22s %7.3f s", run+1, sys, stepCopyUpGiB, secs)
	}
	if serr := m.stop(); serr != nil {
		sec.Errors = append(sec.Errors, fmt.Sprintf("%s run %d: %s teardown: %v", sys, run+1, stepCopyUpGiB, serr))
	}
	r.remove(dir)
}
