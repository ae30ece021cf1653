package peers

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/stratafs/strata/status"
)

// Strata returns the daemon for `strata mount ARGS... SOURCE MNT`, stopped
// with `strata umount MNT`. args carry the flags (--upper, --cache,
// --layer...); source is an image reference, or "" with --layer flags.
// The log goes to dir/strata.log.
func Strata(bin string, args []string, source, mnt, dir string) *Daemon {
	argv := append([]string{bin, "mount"}, args...)
	if source != "" {
		argv = append(argv, source)
	}
	fsType := "fuse.strata"
	if slices.Contains(args, "--kernel-overlay") && slices.Contains(args, "--upper") {
		fsType = "overlay" // kernel overlayfs over strata's image mount
	}
	return &Daemon{
		Label: "strata", Argv: append(argv, mnt), Mnt: mnt, FSType: fsType,
		Log: filepath.Join(dir, "strata.log"), StopArgv: []string{bin, "umount", mnt},
	}
}

// FuseOverlayfs returns the fuse-overlayfs daemon over lowers (lowest
// first), with its kernel-default-like options, unmounted with umount(2).
func FuseOverlayfs(mnt, upper, work, dir string, lowers []string) *Daemon {
	return &Daemon{
		Label: "fuse-overlayfs", Mnt: mnt, FSType: "fuse.fuse-overlayfs",
		Argv: []string{"fuse-overlayfs", "-f", "-o", OverlayOptions(upper, work, lowers), mnt},
		Log:  filepath.Join(dir, "fuse-overlayfs.log"),
	}
}

// StrataTotals is a mount's own account, summed over its layers.
type StrataTotals struct {
	Fetched  int64 `json:"bytes_fetched"` // from the registry
	Served   int64 `json:"bytes_served"`  // file bytes returned to readers
	Requests int64 `json:"requests"`
}

// StatRefresh is how often a mounting process rewrites its status; a
// reading taken one refresh after the work it should count is complete.
const StatRefresh = 1100 * time.Millisecond

// StrataStat runs `strata stat --json MNT` and sums its layers. Call it
// StatRefresh after the work to be counted.
func StrataStat(ctx context.Context, bin, mnt string) (StrataTotals, error) {
	out, err := exec.CommandContext(ctx, bin, "stat", "--json", mnt).Output()
	if err != nil {
		return StrataTotals{}, fmt.Errorf("strata stat %s: %w", mnt, err)
	}
	var m status.Mount
	if err := json.Unmarshal(out, &m); err != nil {
		return StrataTotals{}, fmt.Errorf("strata stat --json: %w", err)
	}
	var t StrataTotals
	for _, l := range m.Layers {
		t.Fetched += l.BytesFetched
		t.Served += l.BytesServed
		t.Requests += l.Requests
	}
	return t, nil
}
