package tests

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stratafs/strata/status"
)

// TestChunkCacheAcrossMounts: with --cache, a second mount (a new process)
// of the same image serves a file read by the first one without fetching
// any of its chunks from the registry again.
func TestChunkCacheAcrossMounts(t *testing.T) {
	t.Setenv("STRATA_RUNTIME_DIR", t.TempDir()) // inherited by the strata processes
	fx := registryFixture(t)
	f := lazyFormats[len(lazyFormats)-1]
	ref := startRegistry(t, nil) + "/strata/app:" + string(f)
	pushImage(t, ref, lazyImage(t, fx.blobs[f]))
	cacheDir := t.TempDir()
	big := fx.baseFile("usr/lib/big")
	var last status.Mount
	for round := 1; round <= 2; round++ {
		m := mountRegistry(t, ref, "", "--cache", cacheDir)
		got, err := os.ReadFile(filepath.Join(m.Dir, "usr/lib/big"))
		if err != nil || string(got) != string(big) {
			t.Fatalf("round %d: read usr/lib/big: %d bytes, %v", round, len(got), err)
		}
		last = waitServed(t, m.Dir, int64(len(big)))
		m.unmount(t)
		if round == 1 && sum(last.Layers, func(l status.Layer) int64 { return l.ChunkFetches }) == 0 {
			t.Fatal("the first mount fetched no chunk: nothing to test")
		}
	}
	if n := sum(last.Layers, func(l status.Layer) int64 { return l.ChunkFetches }); n != 0 {
		t.Errorf("the second mount fetched %d chunks from the registry, want 0 (all in the cache)", n)
	}
	if sum(last.Layers, func(l status.Layer) int64 { return l.ChunkHits }) == 0 {
		t.Error("the second mount shows no cache hits")
	}
}

// waitServed polls strata stat until the mount has served n bytes.
func waitServed(t *testing.T, mnt string, n int64) status.Mount {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var st status.Mount
		out, err := exec.Command(strataBin, "stat", "--json", mnt).Output()
		if err == nil && json.Unmarshal(out, &st) == nil &&
			sum(st.Layers, func(l status.Layer) int64 { return l.BytesServed }) >= n {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("stat of %s never showed %d bytes served: %v %s", mnt, n, err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
