package snapshotter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/stratafs/strata/cache"
	"github.com/stratafs/strata/status"
	"golang.org/x/sys/unix"
)

// Detached mounts (Options.Detached). A remote snapshot's mount is served
// by a process of its own, started in a session of its own when the pull
// commits the image's top lazy layer (mountEarly), or else the first time
// the snapshot's mounts name it: it opens the image's layers 0..n (their
// TOCs from the cache, where the snapshotter puts them from the pull's
// first Prepare on, without building their trees), mounts them on the
// snapshot's directory as the in-process mount would, fetches ahead for
// them, and ends once that mount is unmounted, by Remove or by hand. The snapshotter's own process then holds no FUSE connection:
// stopping or restarting it (an upgrade, a crash) leaves running
// containers their image, and a new process keeps the live mounts it
// finds, detaching only those whose server is gone (ENOTCONN). Close
// leaves detached mounts up.
//
// What it costs: a process per image in use, started during the pull
// (also for an image pulled and never run), holding the image's trees and
// hot chunks. A service manager that kills the snapshotter's whole
// control group on stop (systemd's default KillMode) kills these processes
// too: run it with KillMode=process to keep them.

// MountSpec is what a detached mount's process serves: layers 0..Layer of
// the image Ref at Manifest, on Dir, logging to Log.
type MountSpec struct {
	Ref, Manifest string
	Layer         int
	Dir           string
	Log           string
}

// detachedWait bounds how long a detached mount's process may take to
// mount: opening the layers fetches their TOCs if the cache lacks them.
const detachedWait = 2 * time.Minute

// mountDetached starts r's process and waits until its mount is up. A
// live mount already there (a restart's, or another process's) is kept;
// a dead one is detached and served anew. r.mu is held.
func (s *Snapshotter) mountDetached(ctx context.Context, r *remoteSnapshot) error {
	if liveFUSE(r.dir) {
		r.detached = true
		return nil
	}
	unix.Unmount(r.dir, unix.MNT_DETACH) // a dead server's mount, if any
	spec := MountSpec{Ref: r.ref, Manifest: r.manifest, Layer: r.layer, Dir: r.dir,
		Log: filepath.Join(filepath.Dir(r.dir), "strata-mount.log")}
	// Appended to: a process served anew after one died keeps the dead
	// one's last words.
	logf, err := os.OpenFile(spec.Log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("snapshotter: mount %s: %w", r.name, err)
	}
	defer logf.Close()
	cmd := s.detached(spec)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("snapshotter: mount %s: start its process: %w", r.name, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }() // reaps it, whenever it ends
	ctx, cancel := context.WithTimeout(ctx, detachedWait)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !liveFUSE(r.dir) {
		select {
		case err := <-exited:
			if liveFUSE(r.dir) {
				break // another process serves it (see ServeDetached)
			}
			return fmt.Errorf("snapshotter: mount %s: its process ended before mounting (%v)%s", r.name, err, logTail(spec.Log))
		case <-ctx.Done():
			cmd.Process.Kill()
			return fmt.Errorf("snapshotter: mount %s: not mounted after %v: %w%s", r.name, detachedWait, ctx.Err(), logTail(spec.Log))
		case <-tick.C:
		}
	}
	r.detached = true
	s.logger.Printf("mounted layers 0-%d of %s (%s) on %s, served by process %d", r.layer, r.ref, r.manifest, r.dir, cmd.Process.Pid)
	return nil
}

// mountEarly starts the detached mount of the remote snapshot name, the
// image's top lazy layer, when the pull commits it: the mount's process
// then starts and opens the layers while containerd goes on with the pull
// and creates the container, whose Mounts waits for it (on r.mu) instead
// of starting it. A failure is only logged: that Mounts tries again.
func (s *Snapshotter) mountEarly(name string) {
	s.mu.Lock()
	r := s.remotes[name]
	s.mu.Unlock()
	if r == nil {
		return
	}
	go func() {
		if err := s.mountRemote(context.Background(), r); err != nil {
			s.logger.Print(err)
		}
	}()
}

// unmountDetached unmounts a detached mount; its process ends with it. A
// mount something has open is detached.
func unmountDetached(dir string) error {
	err := unix.Unmount(dir, 0)
	if errors.Is(err, unix.EBUSY) {
		err = unix.Unmount(dir, unix.MNT_DETACH)
	}
	if err != nil && !errors.Is(err, unix.EINVAL) { // EINVAL: not mounted
		return fmt.Errorf("unmount %s: %w", dir, err)
	}
	return nil
}

// liveFUSE reports whether dir is a FUSE mount whose server answers.
func liveFUSE(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && st.Type == unix.FUSE_SUPER_MAGIC
}

// logTail is the end of a detached mount's log, for an error.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return ""
	}
	if len(b) > 2048 {
		b = b[len(b)-2048:]
	}
	return "; its log ends: " + strings.TrimSpace(string(bytes.ToValidUTF8(b, nil)))
}

// ServeOptions are a detached mount's process's settings.
type ServeOptions struct {
	Spec     MountSpec
	Cache    *cache.Store
	Insecure bool
	Logger   *log.Logger
}

// ServeDetached serves one detached mount (see MountSpec) until it is
// unmounted: the body of the process Options.Detached starts.
func ServeDetached(ctx context.Context, o ServeOptions) error {
	sp := o.Spec
	if sp.Ref == "" || sp.Manifest == "" || sp.Dir == "" || sp.Layer < 0 || o.Cache == nil {
		return errors.New("snapshotter: a detached mount needs a reference, a manifest digest, a layer, a directory and a cache")
	}
	if liveFUSE(sp.Dir) {
		// A snapshotter restarted while this mount was being made may
		// start a second process for it: the first one serves it.
		o.Logger.Printf("%s is served already", sp.Dir)
		return nil
	}
	is := newImages(o.Cache, o.Insecure, true, detachedMemoryChunks)
	defer is.close()
	srv, im, err := is.mount(ctx, sp.Ref, sp.Manifest, sp.Layer, sp.Dir, o.Logger)
	if err != nil {
		return fmt.Errorf("snapshotter: mount %s: %w", sp.Dir, err)
	}
	o.Logger.Printf("mounted layers 0-%d of %s (%s) on %s", sp.Layer, sp.Ref, sp.Manifest, sp.Dir)
	stop := status.Start(o.Logger, statusOf(sp.Ref, sp.Manifest, sp.Dir), im.collect(sp.Layer, o.Cache))
	srv.Wait()
	stop()
	return nil
}

// statusOf is the status record of a remote snapshot's mount.
func statusOf(ref, manifest, dir string) *status.Mount {
	src, err := digestRef(ref, manifest)
	if err != nil {
		src = ref
	}
	return &status.Mount{Mountpoint: dir, Source: src, PID: os.Getpid(), Started: time.Now()}
}
