package tests

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/stratafs/strata/status"
)

// TestRecordAndPrioritize: `strata mount --record` lists the files a
// workload read, in order; `strata convert --prioritize` puts them first,
// before the prefetch landmark; a mount of the converted image fetches
// them at once, so reading them again makes no request.
func TestRecordAndPrioritize(t *testing.T) {
	t.Setenv("STRATA_RUNTIME_DIR", t.TempDir())
	fx := registryFixture(t)
	counter := &countingHandler{}
	host := startRegistry(t, nil)
	var plain []v1.Layer
	for _, tr := range fx.tars {
		plain = append(plain, plainLayer(t, tr))
	}
	src := host + "/strata/plain:v1"
	pushImage(t, src, imageOf(t, plain, make([]map[string]string, len(plain))))
	read := []string{"usr/bin/tool", "etc/passwd", "usr/lib/exact1"}

	lazyRef := host + "/strata/lazy:v1"
	convertImage(t, src, lazyRef)
	rec := filepath.Join(t.TempDir(), "record")
	m := mountRegistry(t, lazyRef, "", "--record", rec)
	for _, p := range read { // in this order, which the record must keep
		readFiles(t, m.Dir, pick(fx, []string{p}), "recording mount")
	}
	m.unmount(t)
	list, err := os.ReadFile(rec)
	if err != nil {
		t.Fatal(err)
	}
	want := "/" + strings.Join(read, "\n/") + "\n"
	if string(list) != want {
		t.Fatalf("--record wrote %q, want %q", list, want)
	}

	viaCounter := startRegistry(t, func(next http.Handler) http.Handler { counter.next = next; return counter })
	src2 := viaCounter + "/strata/plain:v1"
	pushImage(t, src2, imageOf(t, plain, make([]map[string]string, len(plain))))
	prioritized := viaCounter + "/strata/prioritized:v1"
	convertImage(t, src2, prioritized, "--prioritize", rec)
	p := mountRegistry(t, prioritized, "", "--prefetch", "landmark")
	waitStat(t, p.Dir, "the landmark's files prefetched", func(st status.Mount) bool {
		return layerSum(st, func(l status.Layer) int64 { return l.Prefetches }) > 0 &&
			layerSum(st, func(l status.Layer) int64 { return l.ChunkFetches }) > 0
	})
	time.Sleep(statusSettle) // let the prefetch windows finish
	before := counter.n.Load()
	readFiles(t, p.Dir, pick(fx, read), "prioritized mount")
	if n := counter.n.Load() - before; n != 0 {
		t.Errorf("reading the prioritized files made %d registry requests; want 0 (prefetched at mount)", n)
	}
}

// pick returns the base-layer files at the given paths.
func pick(fx *regFixture, paths []string) map[string][]byte {
	files := map[string][]byte{}
	for _, p := range paths {
		files[p] = fx.baseFile(p)
	}
	return files
}

// convertImage runs strata convert (zstd:chunked) from src to dst.
func convertImage(t *testing.T, src, dst string, extra ...string) {
	t.Helper()
	args := append(append([]string{"convert"}, extra...), src, dst)
	if out, err := exec.Command(strataBin, args...).CombinedOutput(); err != nil {
		t.Fatalf("strata %q: %v: %s", args, err, out)
	}
}
