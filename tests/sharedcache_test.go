package tests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratafs/strata/status"
)

// baseFiles are files of the base layer that the upper layers of the
// fixture leave alone, by path: visible, with the base's bytes, in every
// image made from it.
func baseFiles(fx *regFixture) map[string][]byte {
	return pick(fx, []string{"etc/passwd", "etc/shadow", "usr/bin/tool", "usr/bin/suid", "usr/lib/big",
		"usr/lib/exact", "usr/lib/exact1", "usr/share/doc/readme", "home/user/.profile"})
}

// readFiles reads each file through the mount and checks its bytes.
func readFiles(t *testing.T, mnt string, files map[string][]byte, what string) {
	t.Helper()
	for p, want := range files {
		got, err := os.ReadFile(filepath.Join(mnt, p))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %s: %d bytes, %v (want %d right ones)", what, p, len(got), err, len(want))
		}
	}
}

// layerNamed returns the mount's status of the layer with the given digest.
func layerNamed(t *testing.T, st status.Mount, digest string) status.Layer {
	t.Helper()
	for _, l := range st.Layers {
		if l.Name == digest {
			return l
		}
	}
	t.Fatalf("no layer %s in the mount's status", digest)
	return status.Layer{}
}

func statOf(t *testing.T, mnt string) status.Mount {
	t.Helper()
	var st status.Mount
	out, err := exec.Command(strataBin, "stat", "--json", mnt).Output()
	if err != nil || json.Unmarshal(out, &st) != nil {
		t.Fatalf("strata stat %s: %v: %s", mnt, err, out)
	}
	return st
}

// TestSharedBaseLayer: two images sharing a base layer, mounted one after
// the other on the same cache: the second mount reads the shared files
// with no registry request for them (the TOC aside, fetched at mount).
func TestSharedBaseLayer(t *testing.T) {
	t.Setenv("STRATA_RUNTIME_DIR", t.TempDir())
	fx := registryFixture(t)
	f := lazyFormats[1]
	blobs := fx.blobs[f]
	host := startRegistry(t, nil)
	refA, refB := host+"/strata/one:v1", host+"/strata/two:v1"
	pushImage(t, refA, lazyImage(t, blobs))
	other := buildLazyBlob(t, makeLayerTar(t, []tarEnt{tFile("etc/other", []byte("image two"), 0o644)}), f)
	pushImage(t, refB, lazyImage(t, []lazyBlob{blobs[0], other}))
	cacheDir := t.TempDir()
	files := baseFiles(fx)
	a := mountRegistry(t, refA, "", "--cache", cacheDir)
	readFiles(t, a.Dir, files, "image one")
	time.Sleep(statusSettle)
	a.unmount(t)

	b := mountRegistry(t, refB, "", "--cache", cacheDir)
	time.Sleep(statusSettle)
	baseDigest := layerDigest(t, blobs[0])
	before := layerNamed(t, statOf(t, b.Dir), baseDigest)
	readFiles(t, b.Dir, files, "image two")
	if got, _ := os.ReadFile(filepath.Join(b.Dir, "etc/other")); string(got) != "image two" {
		t.Errorf("etc/other: %q", got)
	}
	time.Sleep(statusSettle)
	after := layerNamed(t, statOf(t, b.Dir), baseDigest)
	if after.Requests != before.Requests || after.ChunkFetches != 0 {
		t.Errorf("reading the shared base's files made %d registry requests and %d chunk fetches; want 0 and 0",
			after.Requests-before.Requests, after.ChunkFetches)
	}
}

// servedFixture pushes the registry fixture in format f to a registry of
// its own, and keeps the mounts' status files in the test's own runtime
// directory (the variable is inherited by the strata processes).
func servedFixture(t *testing.T, f lazyFormat) (*regFixture, string) {
	t.Helper()
	t.Setenv("STRATA_RUNTIME_DIR", t.TempDir())
	fx := registryFixture(t)
	ref := startRegistry(t, nil) + "/strata/app:" + string(f)
	pushImage(t, ref, lazyImage(t, fx.blobs[f]))
	return fx, ref
}

// statusSettle is how long a mount takes to rewrite its status file.
const statusSettle = 1200 * time.Millisecond

// TestTwoMountsFillOneCache: two strata processes mount the same image on
// the same empty cache at once and read every file concurrently: every
// read is right, and the cache holds no damaged entry afterwards.
func TestTwoMountsFillOneCache(t *testing.T) {
	fx, ref := servedFixture(t, lazyFormats[0])
	cacheDir := t.TempDir()
	files := baseFiles(fx)
	mounts := []*strataMount{mountRegistry(t, ref, "", "--cache", cacheDir), mountRegistry(t, ref, "", "--cache", cacheDir)}
	var wg sync.WaitGroup
	for round := range 3 {
		for i, m := range mounts {
			wg.Go(func() { readFiles(t, m.Dir, files, fmt.Sprintf("mount %d round %d", i, round)) })
		}
	}
	wg.Wait()
	for _, m := range mounts {
		m.unmount(t)
	}
	out, err := exec.Command(strataBin, "cache", "gc", "--verify", "--cache", cacheDir).CombinedOutput()
	if err != nil {
		t.Fatalf("strata cache gc --verify: %v: %s", err, out)
	}
	if !strings.Contains(string(out), "0 corrupt") {
		t.Errorf("strata cache gc --verify found damage: %s", out)
	}
}

// TestEvictionWhileReading: a cache capped far below the image evicts
// while a mount reads it again and again; every read is right, and the
// cache ends under its cap.
func TestEvictionWhileReading(t *testing.T) {
	fx, ref := servedFixture(t, lazyFormats[1])
	const capBytes = 512 << 10
	m := mountRegistry(t, ref, "", "--cache", t.TempDir(), "--cache-size", "512K")
	files := baseFiles(fx)
	var total int64
	for _, data := range files {
		total += int64(len(data))
	}
	if total < 2*capBytes {
		t.Fatalf("the image's files hold %d bytes: not enough to overflow a %d-byte cache", total, capBytes)
	}
	for round := range 4 {
		readFiles(t, m.Dir, files, fmt.Sprintf("round %d", round))
	}
	st := waitStat(t, m.Dir, "the cache back under its cap", func(st status.Mount) bool {
		return st.Cache != nil && st.Cache.Bytes >= 0 && st.Cache.Bytes <= capBytes && st.Cache.Evictions > 0
	})
	t.Logf("cache: %d bytes in %d entries after %d evictions", st.Cache.Bytes, st.Cache.Entries, st.Cache.Evictions)
}

// layerDigest is the digest a layer's blob has in its manifest.
func layerDigest(t *testing.T, b lazyBlob) string {
	t.Helper()
	h, err := blobLayer{b}.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

// countingHandler counts the requests a registry receives, or only those
// whose path holds only.
type countingHandler struct {
	n    atomic.Int64
	only string
	next http.Handler
}

func (c *countingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.Contains(r.URL.Path, c.only) {
		c.n.Add(1)
	}
	c.next.ServeHTTP(w, r)
}

// TestRestartFromCache: a new strata process on the same cache mounts an
// image named by digest and serves the files an earlier one read, with no
// registry request at all: manifest, config, TOCs, chunks and whole files
// all come from the cache.
func TestRestartFromCache(t *testing.T) {
	t.Setenv("STRATA_RUNTIME_DIR", t.TempDir())
	fx := registryFixture(t)
	counter := &countingHandler{}
	host := startRegistry(t, func(next http.Handler) http.Handler { counter.next = next; return counter })
	files := baseFiles(fx)
	for _, f := range lazyFormats {
		t.Run(string(f), func(t *testing.T) {
			ref := pushImage(t, host+"/strata/restart:"+string(f), lazyImage(t, fx.blobs[f]))
			cacheDir := t.TempDir()
			first := mountRegistry(t, ref, "", "--cache", cacheDir)
			readFiles(t, first.Dir, files, "first mount")
			waitStat(t, first.Dir, "the big file stored whole", func(st status.Mount) bool {
				return layerSum(st, func(l status.Layer) int64 { return l.WholePuts }) >= 1
			})
			first.unmount(t)
			before := counter.n.Load()
			again := mountRegistry(t, ref, "", "--cache", cacheDir)
			readFiles(t, again.Dir, files, "after the restart")
			again.unmount(t)
			if n := counter.n.Load() - before; n != 0 {
				t.Errorf("the restarted mount made %d registry requests; want 0", n)
			}
		})
	}
}

// TestCorruptCacheRefetched: every entry of the cache damaged on disk (a
// flipped byte in each chunk and whole file, one file cut short): a new
// mount serves every file right, fetching again what it finds damaged.
func TestCorruptCacheRefetched(t *testing.T) {
	fx, ref := servedFixture(t, lazyFormats[1])
	cacheDir := t.TempDir()
	files := baseFiles(fx)
	first := mountRegistry(t, ref, "", "--cache", cacheDir)
	readFiles(t, first.Dir, files, "first mount")
	waitStat(t, first.Dir, "the big file stored whole", func(st status.Mount) bool {
		return layerSum(st, func(l status.Layer) int64 { return l.WholePuts }) >= 1
	})
	first.unmount(t)
	damaged := 0
	for _, kind := range []string{"chunks", "files"} {
		filepath.WalkDir(filepath.Join(cacheDir, kind), func(p string, d os.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			data, err := os.ReadFile(p)
			if err != nil || len(data) == 0 {
				return err
			}
			data[len(data)/2] ^= 0x40
			if damaged == 0 {
				data = data[:len(data)/2] // and one cut short
			}
			damaged++
			return os.WriteFile(p, data, 0o644)
		})
	}
	if damaged < 2 {
		t.Fatalf("damaged %d cache entries: nothing to test", damaged)
	}
	again := mountRegistry(t, ref, "", "--cache", cacheDir)
	readFiles(t, again.Dir, files, "over a damaged cache")
	var total int64
	for _, data := range files {
		total += int64(len(data))
	}
	st := waitStat(t, again.Dir, "the reads, and damaged entries found", func(st status.Mount) bool {
		return st.Cache != nil && st.Cache.Corrupt > 0 &&
			layerSum(st, func(l status.Layer) int64 { return l.BytesServed }) >= total
	})
	if layerSum(st, func(l status.Layer) int64 { return l.ChunkFetches }) == 0 {
		t.Error("nothing fetched again over a damaged cache")
	}
	t.Logf("%d entries damaged; the mount found %d corrupt", damaged, st.Cache.Corrupt)
}
