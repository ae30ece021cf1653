package tests

import (
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
)

// TestPullOffline: a tag mounted once on a node mounts again with the
// registry gone, by default (--pull missing) and with --pull never: the
// tag's digest, the manifest, the config and the TOCs come from the cache,
// and the files read before read again, right. --pull always then fails,
// naming the registry, and --pull never of a tag never mounted here is
// refused, saying so.
func TestPullOffline(t *testing.T) {
	t.Setenv("STRATA_RUNTIME_DIR", t.TempDir())
	fx := registryFixture(t)
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := srv.Listener.Addr().String()
	ref := host + "/strata/offline:v1"
	pushImage(t, ref, lazyImage(t, fx.blobs[lazyFormats[0]]))
	cacheDir := t.TempDir()
	files := baseFiles(fx)
	m := mountRegistry(t, ref, "", "--cache", cacheDir)
	readFiles(t, m.Dir, files, "online")
	m.unmount(t)

	srv.Close()
	for _, pull := range []string{"missing", "never"} {
		m := mountRegistry(t, ref, "", "--cache", cacheDir, "--pull", pull)
		readFiles(t, m.Dir, files, "offline, --pull "+pull)
		m.unmount(t)
	}
	err, out := runRefused(t, ref, t.TempDir(), "--cache", cacheDir, "--pull", "always")
	if err == nil || !strings.Contains(out, host) {
		t.Errorf("--pull always with the registry gone: %v, %q; want an error naming %s", err, out, host)
	}
	err, out = runRefused(t, host+"/strata/offline:v2", t.TempDir(), "--cache", cacheDir, "--pull", "never")
	if err == nil || !strings.Contains(out, "not resolved on this node") {
		t.Errorf("--pull never of a new tag: %v, %q; want a refusal saying the tag was never resolved here", err, out)
	}
	err, out = runRefused(t, ref, t.TempDir(), "--cache", cacheDir, "--pull", "sometimes")
	if err == nil || !strings.Contains(out, "missing, always or never") {
		t.Errorf("--pull sometimes: %v, %q; want the choices named", err, out)
	}
}
