// Command demo is the registry half of `make demo`: it pushes the layer
// directories demo.sh builds to an in-process registry as an ordinary gzip
// image, converts it with `strata convert`, mounts the converted image
// lazily with `strata mount REF`, runs python3 in a chroot of the mount and
// reports how little of the image the mount fetched.
//
//	go run ./scripts/demo -strata bin/strata -work DIR -layer base -layer app
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/stratafs/strata/layer"
	"io"
	"io/fs"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const (
	repo        = "demo/app"
	chrootShell = `set -e; python3 -c "print(1)"; python3 /app/hello.py; echo written > /tmp/note.txt`
)

type layerFlags []string

func (l *layerFlags) String() string     { return strings.Join(*l, ",") }
func (l *layerFlags) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	var d demo
	flag.Var(&d.layers, "layer", "layer `DIR`, lowest first; repeat for each layer")
	flag.StringVar(&d.strata, "strata", "bin/strata", "`PATH` of the strata binary")
	flag.StringVar(&d.work, "work", "", "scratch `DIR` (upper and mountpoint are made in it)")
	flag.Parse()
	if len(d.layers) == 0 || d.work == "" || flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	// A signal cancels ctx, which stops every subprocess (SIGTERM, which
	// strata mount answers by unmounting); run then returns and cleanup
	// undoes the rest.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	err := d.run(ctx)
	stop()
	if cerr := d.cleanup(); err == nil {
		err = cerr
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo: FAILED:", err)
		os.Exit(1)
	}
}

type demo struct {
	layers layerFlags
	strata string
	work   string

	reg       *countingRegistry
	srv       *http.Server
	mnt       string
	upper     string
	mountCmd  *exec.Cmd
	mountDone chan error
	mountLog  string
}

func section(s string) { fmt.Printf("\n=== %s ===\n", s) }

func (d *demo) run(ctx context.Context) error {
	start := time.Now()
	if err := d.startRegistry(); err != nil {
		return err
	}
	host := d.reg.addr
	gzipRef, lazyRef := host+"/"+repo+":gzip", host+"/"+repo+":lazy"
	if err := d.push(ctx, gzipRef); err != nil {
		return err
	}
	section("Converting the image for lazy loading: strata convert")
	if err := d.runStrata(ctx, os.Stdout, "convert", gzipRef, lazyRef); err != nil {
		return fmt.Errorf("strata convert: %w", err)
	}
	total, err := imageSize(ctx, lazyRef)
	if err != nil {
		return err
	}
	d.reg.reset()
	if err := d.mount(ctx, lazyRef); err != nil {
		return err
	}
	if err := d.runChroot(ctx); err != nil {
		return err
	}
	if err := d.showUpper(); err != nil {
		return err
	}
	fetched := d.reg.served(repo)
	section("What the lazy mount fetched")
	fmt.Printf("image size (compressed, all layers): %.1f MB; fetched from the registry by the lazy mount: %.1f MB (%.0f%%)\n",
		mb(total), mb(fetched), 100*float64(fetched)/float64(total))
	// The mount's own account, as a user would ask for it (it is updated
	// every second, so give it one update after the run).
	time.Sleep(1100 * time.Millisecond)
	if err := d.runStrata(ctx, os.Stdout, "stat", d.mnt); err != nil {
		return err
	}
	if err := d.unmount(ctx); err != nil {
		return err
	}
	fmt.Printf("\ndemo: OK (registry): pushed a gzip image, converted it with strata convert, mounted it lazily, "+
		"ran python3 from it, its write landed in the upper, %.0f%% of the image fetched, clean unmount; %ds\n",
		100*float64(fetched)/float64(total), int(time.Since(start).Seconds()))
	return nil
}

func mb(n int64) float64 { return float64(n) / 1e6 }

// size is n for a reader: the app layer is a few hundred bytes.
func size(n int64) string {
	if n < 1e6 {
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%.1f MB", mb(n))
}

// runStrata runs a short strata subcommand to completion, output to out.
func (d *demo) runStrata(ctx context.Context, out io.Writer, args ...string) error {
	fmt.Printf("+ strata %s\n", strings.ReplaceAll(strings.Join(args, " "), d.work+"/", ""))
	cmd := d.command(ctx, d.strata, args...)
	cmd.Stdout, cmd.Stderr = out, os.Stderr
	return cmd.Run()
}

// command makes ctx's cancellation a SIGTERM to the process (by its PID),
// and a SIGKILL if it has not exited 10 s later.
func (d *demo) command(ctx context.Context, bin string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

// countingRegistry is go-containerregistry's in-memory registry, counting
// the blob bytes it serves per repository.
type countingRegistry struct {
	addr  string
	inner http.Handler
	mu    sync.Mutex
	bytes map[string]*atomic.Int64
}

func (c *countingRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	repoName, _, isBlob := strings.Cut(strings.TrimPrefix(r.URL.Path, "/v2/"), "/blobs/")
	if !isBlob || r.Method != http.MethodGet || strings.HasPrefix(r.URL.Path, "/v2/"+repoName+"/blobs/uploads") {
		c.inner.ServeHTTP(w, r)
		return
	}
	c.inner.ServeHTTP(&countingWriter{ResponseWriter: w, n: c.counter(repoName)}, r)
}

func (c *countingRegistry) counter(repoName string) *atomic.Int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.bytes[repoName]
	if n == nil {
		n = new(atomic.Int64)
		c.bytes[repoName] = n
	}
	return n
}

func (c *countingRegistry) served(repoName string) int64 { return c.counter(repoName).Load() }

func (c *countingRegistry) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bytes = map[string]*atomic.Int64{}
}

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (w *countingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.n.Add(int64(n))
	return n, err
}

func (d *demo) startRegistry() error {
	section("Starting an in-process registry (go-containerregistry) on loopback")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	d.reg = &countingRegistry{addr: ln.Addr().String(), bytes: map[string]*atomic.Int64{},
		inner: registry.New(registry.Logger(log.New(io.Discard, "", 0)))}
	d.srv = &http.Server{Handler: d.reg, ReadHeaderTimeout: 10 * time.Second}
	go d.srv.Serve(ln)
	fmt.Printf("registry listening on http://%s\n", d.reg.addr)
	return nil
}

func (d *demo) push(ctx context.Context, ref string) error {
	section("Pushing the layers as an ordinary gzip image")
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.ConfigFile(img, &v1.ConfigFile{OS: "linux", Architecture: runtime.GOARCH,
		RootFS: v1.RootFS{Type: "layers"}, Config: v1.Config{Cmd: []string{"/bin/sh"}}})
	if err != nil {
		return err
	}
	for _, dir := range d.layers {
		l, err := packLayer(dir)
		if err != nil {
			return fmt.Errorf("pack %s: %w", dir, err)
		}
		n, _ := l.Size()
		dg, _ := l.Digest()
		fmt.Printf("layer %-5s %s  %s (gzip)\n", filepath.Base(dir), dg.String()[:19], size(n))
		if img, err = mutate.AppendLayers(img, l); err != nil {
			return err
		}
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		return err
	}
	fmt.Printf("+ push %s\n", ref)
	if err := remote.Write(r, img, remote.WithContext(ctx)); err != nil {
		return fmt.Errorf("push %s: %w", ref, err)
	}
	return nil
}

// packLayer tars dir (in memory: the demo's layers are tens of MB) and
// lets tarball gzip it.
func packLayer(dir string) (v1.Layer, error) {
	var buf bytes.Buffer
	if err := layer.WriteTar(&buf, dir); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
}

// imageSize is the sum of ref's compressed layer sizes, from its manifest.
func imageSize(ctx context.Context, ref string) (int64, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return 0, err
	}
	img, err := remote.Image(r, remote.WithContext(ctx))
	if err != nil {
		return 0, fmt.Errorf("read back %s: %w", ref, err)
	}
	m, err := img.Manifest()
	if err != nil {
		return 0, err
	}
	var total int64
	for i, l := range m.Layers {
		fmt.Printf("%s layer %d: %s %s\n", ref, i, l.MediaType, size(l.Size))
		total += l.Size
	}
	return total, nil
}

func (d *demo) mount(ctx context.Context, ref string) error {
	section("Mounting the converted image lazily from the registry, with an upper dir")
	d.mnt, d.upper = filepath.Join(d.work, "mnt"), filepath.Join(d.work, "upper")
	d.mountLog = filepath.Join(d.work, "strata-mount.log")
	for _, dir := range []string{d.mnt, d.upper} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	logf, err := os.Create(d.mountLog)
	if err != nil {
		return err
	}
	defer logf.Close()
	// A cache of its own, so that every demo starts from nothing local
	// (a node keeps one in /var/lib/strata/cache, shared by its mounts).
	// --prefetch landmark shows what the command alone fetches: the
	// default, auto, goes on to fetch a layer whole in the background once
	// a quarter of it has been read, which this small image soon is.
	fmt.Printf("+ strata mount --upper upper --cache cache --prefetch landmark %s mnt &\n", ref)
	d.mountCmd = d.command(ctx, d.strata, "mount", "--upper", d.upper, "--cache", filepath.Join(d.work, "cache"),
		"--prefetch", "landmark", ref, d.mnt)
	d.mountCmd.Stdout, d.mountCmd.Stderr = logf, logf
	if err := d.mountCmd.Start(); err != nil {
		return err
	}
	d.mountDone = make(chan error, 1)
	go func() { d.mountDone <- d.mountCmd.Wait() }()
	return d.waitMounted(ctx)
}

func (d *demo) waitMounted(ctx context.Context) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		if fsType, err := mountType(d.mnt); err != nil || fsType != "" {
			if fsType != "" {
				fmt.Printf("mounted: %s, type %s, strata pid %d\n", d.mnt, fsType, d.mountCmd.Process.Pid)
			}
			return err
		}
		select {
		case err := <-d.mountDone:
			d.mountDone <- err
			return fmt.Errorf("strata mount exited before the mount appeared: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not mounted after 20 s", d.mnt)
		}
	}
}

func isMounted(dir string) (bool, error) {
	t, err := mountType(dir)
	return t != "", err
}

// mountType is the file system type mounted on dir, "" if none.
func mountType(dir string) (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPER
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 || fields[4] != dir {
			continue
		}
		for i, f := range fields {
			if f == "-" && i+1 < len(fields) {
				return fields[i+1], nil
			}
		}
		return "?", nil
	}
	return "", sc.Err()
}

func (d *demo) runChroot(ctx context.Context) error {
	section("Running in a chroot of the lazy mount")
	fmt.Printf("+ chroot mnt /bin/sh -c '%s'\n", chrootShell)
	chroot, err := exec.LookPath("chroot")
	if err != nil {
		return err
	}
	cmd := d.command(ctx, chroot, d.mnt, "/bin/sh", "-c", chrootShell)
	// A clean environment: the host's PATH may point at interpreters the
	// image does not have; no .pyc writes, so the upper shows only our file.
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/root", "LANG=C.UTF-8", "PYTHONDONTWRITEBYTECODE=1"}
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	fmt.Print(string(out))
	if err != nil {
		return fmt.Errorf("chroot command failed: %w", err)
	}
	lines := strings.Split(string(out), "\n")
	if lines[0] != "1" {
		return errors.New(`python3 -c "print(1)" did not print 1`)
	}
	if !strings.Contains(string(out), "hello from /app/hello.py") {
		return errors.New("/app/hello.py did not run")
	}
	if _, err := os.Lstat(filepath.Join(d.mnt, "etc/motd")); !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("mnt/etc/motd visible despite the app layer's whiteout (%v)", err)
	}
	fmt.Println("/etc/motd (base) is hidden by the app layer's .wh.motd, as in the local mount")
	return nil
}

func (d *demo) showUpper() error {
	section("Upper dir after the run (the container's writes)")
	err := filepath.WalkDir(d.upper, func(p string, e fs.DirEntry, err error) error {
		if err != nil || p == d.upper {
			return err
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(d.upper, p)
		fmt.Printf("%v %6d  %s\n", fi.Mode(), fi.Size(), rel)
		return nil
	})
	if err != nil {
		return err
	}
	note, err := os.ReadFile(filepath.Join(d.upper, "tmp/note.txt"))
	if err != nil || string(note) != "written\n" {
		return fmt.Errorf("upper/tmp/note.txt missing or wrong (%q, %v)", note, err)
	}
	fmt.Printf("upper/tmp/note.txt: %s", note)
	return nil
}

func (d *demo) unmount(ctx context.Context) error {
	section("Unmounting")
	if err := d.runStrata(ctx, os.Stdout, "umount", d.mnt); err != nil {
		return fmt.Errorf("strata umount: %w", err)
	}
	select {
	case err := <-d.mountDone:
		d.mountCmd = nil
		if err != nil {
			return fmt.Errorf("strata mount exited with %v", err)
		}
	case <-time.After(10 * time.Second):
		return errors.New("strata mount still running 10 s after umount")
	}
	if ok, err := isMounted(d.mnt); ok || err != nil {
		return fmt.Errorf("%s still mounted after umount (%v)", d.mnt, err)
	}
	fmt.Println("unmounted; the strata process exited 0")
	return nil
}

// cleanup runs on every exit: it stops the mount process (by PID, SIGTERM
// then SIGKILL), detaches a mount it left, and stops the registry.
func (d *demo) cleanup() error {
	var errs []error
	if d.mountCmd != nil {
		errs = append(errs, d.stopMount())
	}
	if d.mnt != "" {
		if ok, _ := isMounted(d.mnt); ok {
			errs = append(errs, syscall.Unmount(d.mnt, syscall.MNT_DETACH))
		}
	}
	if d.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := d.srv.Shutdown(ctx); err != nil {
			errs = append(errs, d.srv.Close())
		}
	}
	return errors.Join(errs...)
}

func (d *demo) stopMount() error {
	var err error
	select {
	case err = <-d.mountDone:
	default:
		d.mountCmd.Process.Signal(syscall.SIGTERM)
		select {
		case err = <-d.mountDone:
		case <-time.After(5 * time.Second):
			d.mountCmd.Process.Kill()
			err = <-d.mountDone
		}
	}
	if log, _ := os.ReadFile(d.mountLog); len(log) > 0 {
		fmt.Fprintf(os.Stderr, "--- strata mount log ---\n%s", log)
	}
	if err != nil {
		return fmt.Errorf("strata mount: %w", err)
	}
	return nil
}
