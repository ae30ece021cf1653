package suite

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/stratafs/strata/bench/netshape"
)

// ErrBadOption: an option the suite cannot run with.
var ErrBadOption = errors.New("suite: bad option")

// The scenario groups, in the order they run; Options.Scenarios picks some.
const (
	ScenCold     = "cold"     // 1: cold start to first output (python3 print(1), the app)
	ScenFullRead = "fullread" // 1b: read every file from nothing local
	ScenBytes    = "bytes"    // 2: bytes fetched vs bytes read (counted during cold and fullread)
	ScenWarm     = "warm"     // 3: warm reads: every file, fio sequential and 4 KiB random
	ScenMeta     = "meta"     // 4: find + stat, ls -lR, cold and warm
	ScenWrites   = "writes"   // 5: untar, copy-up, small creates
	ScenMemory   = "memory"   // 6: strata's peak RSS
	ScenScaling  = "scaling"  // 7: 1, 4 and 16 containers at once
	// 8: container start through containerd, cold and second (with Quick only when named)
	ScenContainerd = "containerd"
)

// AllScenarios lists every group.
var AllScenarios = []string{ScenCold, ScenFullRead, ScenBytes, ScenWarm, ScenMeta, ScenWrites, ScenMemory, ScenScaling, ScenContainerd}

// Options configure Run. The zero value plus Out is the full suite.
type Options struct {
	// Quick uses the small image (images.BuildQuick) and one run: the
	// smoke test's setting.
	Quick bool
	// Runs per system and scenario; default 5 (1 with Quick).
	Runs int
	// Links for the scenarios that fetch from the registry; default
	// loopback, 100M20ms and 1G2ms (loopback only with Quick).
	Links []netshape.Link
	// Scenarios picks groups from AllScenarios; default all.
	Scenarios []string
	// Out receives suite.json, suite.md and the PNG plots.
	Out string
	// Work is the scratch directory (mounts, extracted layers, caches);
	// default /var/tmp/strata-suite. It is emptied first.
	Work string
	// ImageCache is images' cache; default images.DefaultCacheDir.
	ImageCache string
	// Strata is the strata binary; default: built from ./cmd/strata into Work.
	Strata string
	// Snapshotter is the strata-snapshotter binary, for the containerd
	// scenario; default: built from ./cmd/strata-snapshotter into Work.
	Snapshotter string
	// SnapshotterArgs are more arguments for its serve (such as
	// --detached-mounts).
	SnapshotterArgs []string
	// Timeout bounds one system's run of one scenario; default 10 minutes.
	Timeout time.Duration
	// Progress receives one line per step; nil discards them.
	Progress io.Writer
}

func (o *Options) setDefaults() error {
	if o.Out == "" {
		return fmt.Errorf("%w: no output directory", ErrBadOption)
	}
	if o.Runs == 0 {
		o.Runs = 5
		if o.Quick {
			o.Runs = 1
		}
	}
	if o.Runs < 1 {
		return fmt.Errorf("%w: %d runs", ErrBadOption, o.Runs)
	}
	if len(o.Links) == 0 {
		o.Links = []netshape.Link{netshape.Loopback, netshape.Link100M20ms, netshape.Link1G2ms}
		if o.Quick {
			o.Links = []netshape.Link{netshape.Loopback}
		}
	}
	if len(o.Scenarios) == 0 {
		o.Scenarios = AllScenarios
		if o.Quick {
			// Quick leaves containerd out unless it is asked for by name.
			o.Scenarios = slices.DeleteFunc(slices.Clone(AllScenarios), func(s string) bool { return s == ScenContainerd })
		}
	}
	for _, s := range o.Scenarios {
		if !slices.Contains(AllScenarios, s) {
			return fmt.Errorf("%w: scenario %q (want some of %s)", ErrBadOption, s, strings.Join(AllScenarios, ","))
		}
	}
	if o.Work == "" {
		o.Work = "/var/tmp/strata-suite"
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Minute
	}
	return nil
}

func (o *Options) wants(group string) bool { return slices.Contains(o.Scenarios, group) }

// sizes are what the local scenarios move, smaller for the quick image.
type sizes struct {
	untarFiles, creates int
	randIO              int64 // bytes of 4 KiB random reads per fio run
	scale               []int // containers at once
}

func (o *Options) sizes() sizes {
	if o.Quick {
		return sizes{untarFiles: 1000, creates: 1000, randIO: 16 << 20, scale: []int{1, 4, 16}}
	}
	return sizes{untarFiles: 5000, creates: 10000, randIO: 64 << 20, scale: []int{1, 4, 16}}
}
