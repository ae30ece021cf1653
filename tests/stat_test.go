package tests

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stratafs/strata/status"
)

// TestStat: `strata stat` shows, per layer, what a registry mount fetched
// and served, the figures follow the reads, and the status goes with the
// mount. A mount also removes the status left by one that was killed.
func TestStat(t *testing.T) {
	runtimeDir := t.TempDir()
	t.Setenv("STRATA_RUNTIME_DIR", runtimeDir) // inherited by the strata processes
	killed := t.TempDir()
	// PIDs wrap far below this on Linux (pid_max <= 4194304).
	if err := status.Write(runtimeDir, &status.Mount{Mountpoint: killed, PID: 1 << 30}); err != nil {
		t.Fatal(err)
	}
	fx := registryFixture(t)
	f := lazyFormats[0]
	ref := startRegistry(t, nil) + "/strata/app:" + string(f)
	pushImage(t, ref, lazyImage(t, fx.blobs[f]))
	m := mountRegistry(t, ref, "")
	big := fx.baseFile("usr/lib/big")
	got, err := os.ReadFile(filepath.Join(m.Dir, "usr/lib/big"))
	if err != nil || string(got) != string(big) {
		t.Fatalf("read usr/lib/big through the mount: %d bytes, %v", len(got), err)
	}
	st := waitServed(t, m.Dir, int64(len(big)))
	// The sweep comes before the mount's first status.
	if _, err := status.Read(runtimeDir, killed); !errors.Is(err, status.ErrNotMounted) {
		t.Errorf("status of a killed mount: %v; want it swept", err)
	}
	if len(st.Layers) != len(fx.blobs[f]) {
		t.Errorf("stat shows %d layers, the image has %d", len(st.Layers), len(fx.blobs[f]))
	}
	size := sum(st.Layers, func(l status.Layer) int64 { return l.Size })
	fetchedBytes := sum(st.Layers, func(l status.Layer) int64 { return l.BytesFetched })
	if fetchedBytes <= 0 || fetchedBytes >= size || sum(st.Layers, func(l status.Layer) int64 { return l.Requests }) <= 0 {
		t.Errorf("fetched %d bytes of %d: want some, not all", fetchedBytes, size)
	}
	text, err := exec.Command(strataBin, "stat", m.Dir).CombinedOutput()
	t.Logf("strata stat:\n%s", text)
	if err != nil || !strings.Contains(string(text), "total") || !strings.Contains(string(text), "%") {
		t.Errorf("strata stat: %v\n%s", err, text)
	}
	m.unmount(t)
	out, err := exec.Command(strataBin, "stat", m.Dir).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "no strata mount") {
		t.Errorf("strata stat after unmount: %v %q, want an error saying there is no mount", err, out)
	}
}

func sum(ls []status.Layer, f func(status.Layer) int64) int64 {
	var n int64
	for _, l := range ls {
		n += f(l)
	}
	return n
}
