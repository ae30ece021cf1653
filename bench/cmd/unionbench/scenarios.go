package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/stratafs/strata/bench"
	"github.com/stratafs/strata/bench/peers"
)

// scenario is one timed operation. The scenarios of a run execute in list
// order on one fresh mount, and the order is what makes a pass cold or
// warm: meta-cold starts right after drop_caches, each "-warm" repeats the
// pass before it.
type scenario struct {
	name, doc string
	bytes     int64 // moved per run, for throughput
	thenCount bool  // count the tree's entries after it, on the first run
	prepare   func(ctx context.Context, m *mounted) error
	run       func(ctx context.Context, m *mounted) (time.Duration, error)
}

const writeName = "bench-write.bin"

func scenarios(t *tree) []scenario {
	walk := func(ctx context.Context, m *mounted) (time.Duration, error) {
		return bench.Time(ctx, "find", m.root, "-ls")
	}
	catAll := func(ctx context.Context, m *mounted) (time.Duration, error) {
		return bench.Shell(ctx, `find "$1" -path "$1/`+bigDir+`" -prune -o -type f -print0 | xargs -0 -r cat`, m.root)
	}
	readBig := func(ctx context.Context, m *mounted) (time.Duration, error) {
		return dd(ctx, "if="+filepath.Join(m.root, bigRel), "of=/dev/null")
	}
	readUpper := func(ctx context.Context, m *mounted) (time.Duration, error) {
		return dd(ctx, "if="+filepath.Join(m.writeRoot, writeName), "of=/dev/null")
	}
	big, files := t.Spec.BigBytes, fmt.Sprintf("%d", t.Stats.Entries)
	mib := fmt.Sprintf("%d MiB", big>>20)
	return []scenario{
		{name: "meta-cold", run: walk, prepare: dropCaches,
			doc: "`find MNT -ls` (lstat of every one of ~" + files + " entries) on a fresh mount right after `sync; echo 3 > /proc/sys/vm/drop_caches`"},
		{name: "meta-warm", run: walk, doc: "the same walk again on the same mount"},
		{name: "cat-cold", run: catAll,
			doc: "`find -type f -print0 | xargs -0 cat` of every small file (the " + bigDir + "/ dir excluded), first pass: names cached, data not"},
		{name: "cat-warm", run: catAll, thenCount: true, doc: "the same cat again: everything cached"},
		{name: "read-lower-cold", run: readBig, bytes: big,
			doc: "`dd bs=1M` read of the " + mib + " file in layer0, first read since drop_caches"},
		{name: "read-lower-warm", run: readBig, bytes: big, doc: "the same read again"},
		{name: "write-upper", bytes: big, run: writeUpper(big),
			doc: "`dd if=/dev/zero bs=1M conv=fsync` of a new " + mib + " file (lands in the upper dir), fsync included"},
		{name: "read-upper-warm", run: readUpper, bytes: big, prepare: warmUp(readUpper),
			doc: "`dd bs=1M` read of that new upper file, after one untimed read"},
		{name: "untar", prepare: mkUntarDir, run: untar(t.tarball()),
			doc: fmt.Sprintf("`tar -xf` of a %d-file tarball (%.0f MB, taken from layer0) into a new dir in the mount, no sync", t.Spec.TarFiles, float64(t.Stats.TarBytes)/1e6)},
	}
}

func dd(ctx context.Context, args ...string) (time.Duration, error) {
	return bench.Time(ctx, "dd", append(args, "bs=1M")...)
}

func writeUpper(size int64) func(context.Context, *mounted) (time.Duration, error) {
	return func(ctx context.Context, m *mounted) (time.Duration, error) {
		return dd(ctx, "if=/dev/zero", "of="+filepath.Join(m.writeRoot, writeName),
			fmt.Sprintf("count=%d", size>>20), "conv=fsync")
	}
}

func warmUp(f func(context.Context, *mounted) (time.Duration, error)) func(context.Context, *mounted) error {
	return func(ctx context.Context, m *mounted) error {
		_, err := f(ctx, m)
		return err
	}
}

func mkUntarDir(_ context.Context, m *mounted) error {
	return os.Mkdir(filepath.Join(m.writeRoot, "untar"), 0o755)
}

func untar(tarball string) func(context.Context, *mounted) (time.Duration, error) {
	return func(ctx context.Context, m *mounted) (time.Duration, error) {
		return bench.Time(ctx, "tar", "-xf", tarball, "-C", filepath.Join(m.writeRoot, "untar"))
	}
}

// dropCaches empties the page, dentry and inode caches of every file
// system, the FUSE mount's and the layers' alike.
func dropCaches(context.Context, *mounted) error { return peers.DropCaches() }
