package suite

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/stratafs/strata/bench"
	"github.com/stratafs/strata/bench/peers"
)

// localStep is one timed operation of the local section. Every operation
// is an external process (find, ls, cat, fio, tar, dd), so the measuring
// process is never one a FUSE server serves, and every system sees the
// same syscalls.
type localStep struct {
	name, group, doc string
	bytes            int64
	prepare          func(ctx context.Context, m *localMount) error
	run              func(ctx context.Context, m *localMount) (time.Duration, error)
}

func dropCaches(context.Context, *localMount) error { return peers.DropCaches() }

func (r *runner) localSteps(in *localInputs) []localStep {
	sz := r.o.sizes()
	find := func(ctx context.Context, m *localMount) (time.Duration, error) {
		return bench.Time(ctx, "find", m.root, "-ls")
	}
	lsR := func(ctx context.Context, m *localMount) (time.Duration, error) {
		return bench.Time(ctx, "ls", "-lR", m.root)
	}
	catAll := func(ctx context.Context, m *localMount) (time.Duration, error) {
		return bench.Shell(ctx, `find "$1" -type f -print0 | xargs -0 -r cat >/dev/null`, m.root)
	}
	big := func(m *localMount) string { return filepath.Join(m.root, in.big) }
	fio := func(rw, bs string, io int64) func(context.Context, *localMount) (time.Duration, error) {
		return func(ctx context.Context, m *localMount) (time.Duration, error) {
			return bench.Time(ctx, "fio", "--name=suite", "--filename="+big(m), "--readonly", "--rw="+rw, "--bs="+bs,
				fmt.Sprintf("--size=%d", in.bigSize), fmt.Sprintf("--io_size=%d", io), "--ioengine=psync",
				"--invalidate=0", "--randrepeat=1", "--output=/dev/null")
		}
	}
	warmed := func(f func(context.Context, *localMount) (time.Duration, error)) func(context.Context, *localMount) error {
		return func(ctx context.Context, m *localMount) error { _, err := f(ctx, m); return err }
	}
	randIO := min(sz.randIO, in.bigSize/4096*4096)
	return []localStep{
		{name: "find -ls cold", group: ScenMeta, prepare: dropCaches, run: find,
			doc: "`find MNT -ls` (lstat of every entry) on a fresh mount, after drop_caches"},
		{name: "find -ls warm", group: ScenMeta, run: find, doc: "the same walk again"},
		{name: "ls -lR cold", group: ScenMeta, prepare: dropCaches, run: lsR, doc: "`ls -lR MNT` after drop_caches"},
		{name: "ls -lR warm", group: ScenMeta, run: lsR, doc: "the same listing again"},
		{name: "read all, first", group: ScenWarm, prepare: dropCaches, run: catAll,
			doc: "`find -type f | xargs cat` of every file after drop_caches: strata fetches from the registry (loopback), the others read the disk"},
		{name: "read all, warm", group: ScenWarm, run: catAll, doc: "the same cat again: everything local and cached"},
		{name: "fio sequential warm", group: ScenWarm, bytes: in.bigSize, prepare: warmed(fio("read", "1M", in.bigSize)), run: fio("read", "1M", in.bigSize),
			doc: "fio psync 1 MiB sequential read of the large file, after one untimed pass (wall time of the fio process)"},
		{name: "fio 4k random warm", group: ScenWarm, bytes: randIO, prepare: warmed(fio("read", "1M", in.bigSize)), run: fio("randread", "4k", randIO),
			doc: fmt.Sprintf("fio psync 4 KiB random reads, %d MiB in all, of the large file, warm", randIO>>20)},
		{name: "untar", group: ScenWrites, prepare: mkdir("untar"), run: func(ctx context.Context, m *localMount) (time.Duration, error) {
			return bench.Time(ctx, "tar", "-xf", in.tarball, "-C", filepath.Join(m.write, "untar"))
		}, doc: fmt.Sprintf("`tar -xf` of %d files taken from the image into a new directory (the upper), no sync", in.tarN)},
		{name: "copy-up", group: ScenWrites, bytes: in.bigSize, run: func(ctx context.Context, m *localMount) (time.Duration, error) {
			return bench.Time(ctx, "dd", "if=/dev/zero", "of="+big(m), "bs=1", "count=1", "conv=notrunc,fsync")
		}, doc: fmt.Sprintf("overwrite 1 byte of the %.0f MB large file in place with `dd conv=notrunc,fsync`: the whole file is copied up and synced "+
			"(native has nothing to copy up; `copy-up 1 GiB` is the same on a 1 GiB file)", float64(in.bigSize)/1e6)},
		{name: "small creates", group: ScenWrites, prepare: mkdir("creates"), run: func(ctx context.Context, m *localMount) (time.Duration, error) {
			return bench.Shell(ctx, `cd "$1" && seq -f f%g "$2" | xargs touch`, filepath.Join(m.write, "creates"), fmt.Sprint(sz.creates))
		}, doc: fmt.Sprintf("`seq | xargs touch` of %d new empty files in a new directory", sz.creates)},
	}
}

func mkdir(name string) func(context.Context, *localMount) error {
	return func(_ context.Context, m *localMount) error { return os.Mkdir(filepath.Join(m.write, name), 0o755) }
}
