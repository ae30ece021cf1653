package tests

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The requirement: against a registry that fails 20% of requests
// (resets, 500s, truncated bodies), a full read of the image still returns
// exactly the right bytes.

// faultRate is the share of blob GETs spoiled once the proxy is armed.
const faultRate = 0.2

// faultKind is one way of spoiling a blob GET.
type faultKind int

const (
	fault500      faultKind = iota // an HTTP 500 with a small error body
	faultReset                     // a TCP RST before any answer
	faultTruncate                  // correct headers, then part of the body, then close
	numFaultKinds
)

var faultNames = [numFaultKinds]string{"500", "reset", "truncated body"}

// blobFaults sits in front of the registry and spoils a share of blob GETs
// once armed (the push and the check pull go through it unarmed). The seed
// is fixed; which request gets which fault still depends on the order the
// mount's concurrent reads arrive in.
type blobFaults struct {
	next   http.Handler
	armed  atomic.Bool
	gets   atomic.Int64
	served [numFaultKinds]atomic.Int64
	// net/http replays a GET reset on a reused connection by itself, so
	// only a reset on a connection's first request is sure to reach
	// strata's own retry.
	freshResets atomic.Int64

	mu    sync.Mutex // guards rng and conns
	rng   *rand.Rand
	conns map[string]bool // client addresses seen, to tell fresh connections
}

func newBlobFaults() *blobFaults {
	return &blobFaults{rng: rand.New(rand.NewPCG(20, 2026)), conns: map[string]bool{}}
}

func (f *blobFaults) wrap(next http.Handler) http.Handler {
	f.next = next
	return f
}

func (f *blobFaults) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !f.armed.Load() || r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/") {
		f.next.ServeHTTP(w, r)
		return
	}
	// One request per connection: then every reset hits a fresh
	// connection, which net/http cannot replay by itself.
	w.Header().Set("Connection", "close")
	kind, spoil, fresh := f.pick(f.gets.Add(1), r.RemoteAddr)
	if !spoil {
		f.next.ServeHTTP(w, r)
		return
	}
	f.served[kind].Add(1)
	switch kind {
	case fault500:
		http.Error(w, "injected fault", http.StatusInternalServerError)
	case faultReset:
		if fresh {
			f.freshResets.Add(1)
		}
		resetConn(w)
	case faultTruncate:
		truncateBody(w, r, f.next)
	}
}

// forcedFaults spoils the blob GETs with these numbers with each fault kind
// in turn, so that every kind is served however few requests the mount
// needs; the rest are spoiled at random.
var forcedFaults = map[int64]faultKind{2: fault500, 4: faultReset, 6: faultTruncate}

func (f *blobFaults) pick(n int64, client string) (kind faultKind, spoil, fresh bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fresh = !f.conns[client]
	f.conns[client] = true
	if k, ok := forcedFaults[n]; ok {
		return k, true, fresh
	}
	if f.rng.Float64() >= faultRate {
		return 0, false, fresh
	}
	return faultKind(f.rng.IntN(int(numFaultKinds))), true, fresh
}

// resetConn makes the kernel send an RST instead of a FIN on close.
func resetConn(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(err)
	}
	if tcp, ok := conn.(*net.TCPConn); ok {
		tcp.SetLinger(0)
	}
	conn.Close()
}

// truncateBody sends the registry's real status line and headers (so the
// Content-Length promises the whole answer), half the body, and closes.
func truncateBody(w http.ResponseWriter, r *http.Request, next http.Handler) {
	rec := httptest.NewRecorder()
	next.ServeHTTP(rec, r)
	body := rec.Body.Bytes()
	rec.Header().Set("Content-Length", fmt.Sprint(len(body)))
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	fmt.Fprintf(buf, "HTTP/1.1 %d %s\r\n", rec.Code, http.StatusText(rec.Code))
	rec.Header().Write(buf)
	buf.WriteString("\r\n")
	buf.Write(body[:len(body)/2])
	buf.Flush()
}

func (f *blobFaults) report(t *testing.T) {
	t.Helper()
	var parts []string
	total := int64(0)
	for k := range numFaultKinds {
		n := f.served[k].Load()
		total += n
		parts = append(parts, fmt.Sprintf("%s=%d", faultNames[k], n))
		if n == 0 {
			t.Errorf("no %s fault was served: the test did not exercise it", faultNames[k])
		}
	}
	if f.freshResets.Load() == 0 {
		t.Error("every reset hit a reused connection, which net/http replays by itself: strata's retry of a reset was never exercised")
	}
	t.Logf("blob GETs %d, spoiled %d (%s; resets on a fresh connection %d)",
		f.gets.Load(), total, strings.Join(parts, " "), f.freshResets.Load())
}

// TestRegistryMountUnderFaults mounts the image through a registry that
// spoils a fifth of blob GETs, from the mount's first TOC fetch on, reads
// every regular file once and checks each against the tars, then checks the
// whole tree against a --layer mount of the extracted tars.
func TestRegistryMountUnderFaults(t *testing.T) {
	fx := registryFixture(t)
	want := mergedFiles(fx.layers)
	for _, f := range lazyFormats {
		t.Run(string(f), func(t *testing.T) {
			faults := newBlobFaults()
			ref := startRegistry(t, faults.wrap) + "/strata/app:" + string(f)
			pushImage(t, ref, lazyImage(t, fx.blobs[f]))
			checkPulled(t, ref, fx.blobs[f])
			faults.armed.Store(true)

			start := time.Now()
			reg := mountRegistry(t, ref, "")
			checkAllFiles(t, reg.Dir, want)
			t.Logf("mount and first full read: %v", time.Since(start).Round(time.Millisecond))
			local := mountStrata(t, extractLayers(t, fx.layers, formOCI), "")
			got := captureTree(t, reg.Dir, viewMerged)
			checkImageTree(t, "registry mount under faults", got, fx)
			compareTreesNamed(t, "registry mount under faults vs --layer mount of the extracted tars", "layers", "registry",
				captureTree(t, local.Dir, viewMerged), got)
			faults.report(t)
		})
	}
}

// checkAllFiles reads every regular file under mnt once, in walk order, and
// wants exactly the files and bytes of want.
func checkAllFiles(t *testing.T, mnt string, want map[string][]byte) {
	t.Helper()
	seen := map[string]bool{}
	err := filepath.WalkDir(mnt, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, _ := filepath.Rel(mnt, p)
		seen[rel] = true
		got, err := os.ReadFile(p)
		switch w, ok := want[rel]; {
		case err != nil:
			t.Errorf("read %s: %v", rel, err)
		case !ok:
			t.Errorf("%s: a regular file the image does not have", rel)
		case !bytes.Equal(got, w):
			t.Errorf("%s: read %d bytes (sha256 %s), want %d bytes (sha256 %s)", rel, len(got), hash16(got), len(w), hash16(w))
		}
		return nil
	})
	if err != nil {
		t.Errorf("walk %s: %v", mnt, err)
	}
	for _, p := range slices.Sorted(func(yield func(string) bool) {
		for p := range want {
			if !seen[p] && !yield(p) {
				return
			}
		}
	}) {
		t.Errorf("%s: missing from the mount", p)
	}
	if len(seen) < 10 {
		t.Errorf("only %d regular files found: the walk proved little", len(seen))
	}
}

// mergedFiles applies the layers' tars (base first) the way a runtime
// unpacks an image and returns the regular files of the result and their
// bytes: an oracle that does not go through any mount.
func mergedFiles(layers [][]tarEnt) map[string][]byte {
	files := map[string][]byte{}
	for _, ents := range layers {
		// A layer's deletions apply to the layers below it only, wherever
		// the tar happens to list them.
		for _, e := range ents {
			dir, base := path.Split(path.Clean(e.hdr.Name))
			switch {
			case base == ".wh..wh..opq":
				removeUnder(files, path.Clean(dir))
			case strings.HasPrefix(base, ".wh."):
				p := path.Join(dir, strings.TrimPrefix(base, ".wh."))
				delete(files, p)
				removeUnder(files, p)
			}
		}
		for _, e := range ents {
			p := path.Clean(e.hdr.Name)
			if strings.HasPrefix(path.Base(p), ".wh.") {
				continue
			}
			delete(files, p)
			if e.hdr.Typeflag != tar.TypeDir {
				removeUnder(files, p)
			}
			switch e.hdr.Typeflag {
			case tar.TypeReg:
				files[p] = e.data
			case tar.TypeLink:
				files[p] = files[path.Clean(e.hdr.Linkname)]
			}
		}
	}
	return files
}

func removeUnder(files map[string][]byte, dir string) {
	for p := range files {
		if strings.HasPrefix(p, dir+"/") {
			delete(files, p)
		}
	}
}
