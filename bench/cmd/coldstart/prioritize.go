package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/stratafs/strata/bench/peers"
)

// prioritize records the files one start of the command reads (a strata
// mount of the zstd:chunked tag with --record) and converts the image
// again with them first in each layer (strata convert --prioritize), for
// every lazy format: what stargz's optimizer does with a recorded run. The
// systems then mount the prioritized tags.
func (b *benchmark) prioritize(ctx context.Context) error {
	dir := filepath.Join(b.opts.work, "record")
	os.RemoveAll(dir)
	mnt := filepath.Join(dir, "mnt")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	list := filepath.Join(dir, "files")
	d := peers.Strata(b.opts.strata, []string{"--no-cache", "--record", list}, b.refs["zstd:chunked"], mnt, dir)
	d.MountWait = b.opts.timeout
	stop := b.clean.Add(d.Stop)
	if err := d.Start(ctx); err != nil {
		return err
	}
	_, err := peers.FirstOutput(ctx, mnt, time.Now(), "1\n", peers.PythonPrint...)
	if serr := stop(); err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("recording run: %w", err)
	}
	data, err := os.ReadFile(list)
	if err != nil {
		return err
	}
	b.note("prioritized", fmt.Sprintf("%d files recorded from one start, put first by strata convert --prioritize", strings.Count(string(data), "\n")))
	for _, sys := range systems[1:] {
		ref := b.refs[sys] + "-prio"
		progress("strata convert --format %s --prioritize", sys)
		out, err := exec.CommandContext(ctx, b.opts.strata, "convert", "--format", sys, "--prioritize", list, b.refs["full-pull"], ref).CombinedOutput()
		if err != nil {
			return fmt.Errorf("strata convert --prioritize: %v: %s", err, out)
		}
		b.refs[sys] = ref
	}
	return nil
}
