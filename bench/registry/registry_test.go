package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/stratafs/strata/bench/images"
	"github.com/stratafs/strata/lazy"
	"go.uber.org/goleak"
)

// TestMain fails the package if a goroutine outlives the tests (the one
// waiting for the registry process ends in Stop). Idle HTTP connections
// to the stopped registry are not leaks.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreAnyFunction("internal/poll.runtime_pollWait"),
	)
}

// startRegistry starts a registry whose Stop runs even if the test fails.
func startRegistry(t *testing.T, o Options) *Registry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Stop(); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return r
}

// gone fails the test if the process or its group still exists.
func gone(t *testing.T, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("process %d still exists (kill 0: %v)", pid, err)
	}
	if err := syscall.Kill(-pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("process group %d still exists (kill 0: %v)", pid, err)
	}
}

func TestStartStop(t *testing.T) {
	r := startRegistry(t, Options{})
	if !strings.HasPrefix(r.Host, "127.0.0.1:") {
		t.Errorf("registry listens on %s, want loopback", r.Host)
	}
	resp, err := http.Get(r.URL + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Docker-Distribution-Api-Version") != "registry/2.0" {
		t.Errorf("GET /v2/: %s, api version %q", resp.Status, resp.Header.Get("Docker-Distribution-Api-Version"))
	}
	pid, conf := r.PID(), r.confDir
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("registry process %d not running: %v", pid, err)
	}
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	gone(t, pid)
	if _, err := os.Stat(conf); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("config dir %s left behind (%v)", conf, err)
	}
	if err := r.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if _, err := http.Get(r.URL + "/v2/"); err == nil {
		t.Error("registry still answers after Stop")
	}
}

// TestStopKillsGroup: a child the registry's process left in its group
// dies with it. The "registry" here is a script that starts a sleep in
// the background, then execs the real one.
func TestStopKillsGroup(t *testing.T) {
	dir := t.TempDir()
	childPid := filepath.Join(dir, "child.pid")
	script := filepath.Join(dir, "registry.sh")
	body := fmt.Sprintf("#!/bin/sh\nsleep 600 &\necho $! > %s\nexec %s \"$@\"\n", childPid, DefaultBinary)
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := ensureInstalled(context.Background(), DefaultBinary); err != nil {
		t.Fatal(err)
	}
	r := startRegistry(t, Options{Binary: script})
	b, err := os.ReadFile(childPid)
	if err != nil {
		t.Fatal(err)
	}
	child, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	pid := r.PID()
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	gone(t, pid)
	gone(t, child)
}

// TestStartFailure: a registry that cannot start leaves no process and no
// temp dir behind, and says why.
func TestStartFailure(t *testing.T) {
	storage := filepath.Join(t.TempDir(), "kept")
	before, _ := filepath.Glob(filepath.Join(os.TempDir(), "strata-registry-*"))
	_, err := Start(context.Background(), Options{Binary: "/bin/false", StorageDir: storage, ReadyTimeout: 5 * time.Second})
	if !errors.Is(err, ErrNotReady) {
		t.Fatalf("Start(/bin/false) = %v, want ErrNotReady", err)
	}
	after, _ := filepath.Glob(filepath.Join(os.TempDir(), "strata-registry-*"))
	if len(after) > len(before) {
		t.Errorf("temp dirs left behind: %v", after)
	}
}

// TestPushPull pushes every format of the quick image, pulls each back
// with go-containerregistry, and checks the manifest digest, every blob's
// bytes, the lazy formats' TOC annotations, and a Range GET of a blob.
func TestPushPull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root: the quick image holds device nodes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	set, err := images.BuildQuick(ctx, images.Options{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	im := set.Image("quick")
	r := startRegistry(t, Options{})
	for _, v := range im.Variants {
		ref := im.Name + ":" + v.Tag
		d, err := r.Push(ctx, v.Location, ref)
		if err != nil {
			t.Fatal(err)
		}
		if d.String() != v.Digest {
			t.Errorf("%s: pushed digest %s, layout has %s", ref, d, v.Digest)
		}
		checkPulled(t, ctx, r, ref, v)
	}
	tags, err := r.Tags(ctx, im.Name)
	if err != nil || len(tags) != len(images.Formats) {
		t.Errorf("tags = %v, %v; want %d", tags, err, len(images.Formats))
	}
	repos, err := r.Catalog(ctx)
	if err != nil || len(repos) != 1 || repos[0] != im.Name {
		t.Errorf("catalog = %v, %v", repos, err)
	}
	testRangeGet(t, ctx, r, im)
}

func checkPulled(t *testing.T, ctx context.Context, r *Registry, ref string, v images.Variant) {
	t.Helper()
	n, err := name.ParseReference(r.Ref(ref), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(n, remote.WithContext(ctx))
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	if d, _ := img.Digest(); d.String() != v.Digest {
		t.Errorf("%s: pulled digest %s, want %s", ref, d, v.Digest)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, desc := range m.Layers {
		_, tocErr := lazy.TOCDigest(desc.Annotations)
		lazyFormat := v.Format == images.EStargz || v.Format == images.ZstdChunked
		if (tocErr == nil) != lazyFormat {
			t.Errorf("%s: layer %s: TOC annotation error %v", ref, desc.Digest, tocErr)
		}
		l, err := img.LayerByDigest(desc.Digest)
		if err != nil {
			t.Fatal(err)
		}
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		got, n, err := v1.SHA256(rc)
		rc.Close()
		if err != nil || got != desc.Digest || n != desc.Size {
			t.Errorf("%s: blob %s: got %s, %d bytes, %v", ref, desc.Digest, got, n, err)
		}
	}
}

// testRangeGet reads a byte range of the largest gzip layer from the
// registry and compares it with the same bytes of the layout's blob.
func testRangeGet(t *testing.T, ctx context.Context, r *Registry, im *images.Image) {
	t.Helper()
	img, err := remote.Image(mustRef(t, r.Ref(im.Name+":gzip")), remote.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	desc := m.Layers[0]
	blob, err := os.ReadFile(filepath.Join(im.Layout, "blobs", desc.Digest.Algorithm, desc.Digest.Hex))
	if err != nil {
		t.Fatal(err)
	}
	const off, n = 100_000, 65_536
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/v2/%s/blobs/%s", r.URL, im.Name, desc.Digest), nil)
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+n-1))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, blob[off:off+n]) {
		t.Errorf("Range GET: %s, %d bytes, Content-Range %q; equal to the blob's bytes: %v",
			resp.Status, len(body), resp.Header.Get("Content-Range"), bytes.Equal(body, blob[off:off+n]))
	}
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	n, err := name.ParseReference(s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
