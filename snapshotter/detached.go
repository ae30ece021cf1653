package snapshotter

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/stratafs/strata/cache"
	"github.com/stratafs/strata/status"
	"golang.org/x/sys/unix"
)

// Detached mounts (Options.Detached). A remote snapshot's mount is served
// by a process of its own, in a session of its own. The pull's first lazy
// Prepare of an image starts it (startPending): it fetches and verifies
// the TOCs, opens the layers up to the image's top lazy one and starts
// fetching ahead for them, while containerd goes on with the pull. When
// the pull commits that top layer (mountEarly), the process is told the
// snapshot's directory on its stdin and mounts there, as the in-process
// mount would (read-only, open-less); a snapshot with no such process (a
// restart's, or a dead process's) gets one started with its directory.
// The snapshotter itself only resolves the image, for the Prepares. The
// process ends once its mount is unmounted, by Remove or by hand, or, if
// it never mounted, once its stdin ends. The snapshotter's own process
// then holds no FUSE connection: stopping or restarting it (an upgrade, a
// crash) leaves running containers their image, and a new process keeps
// the live mounts it finds, detaching only those whose server is gone
// (ENOTCONN). Close leaves detached mounts up.
//
// What it costs: a process per image in use (also for an image pulled and
// never run), holding the image's trees and hot chunks. A service manager
// that kills the snapshotter's whole control group on stop (systemd's
// default KillMode) kills these processes too: run it with
// KillMode=process to keep them.

// MountSpec is what a detached mount's process serves: layers 0..Layer of
// the image Ref at Manifest, on Dir ("": the process reads it from its
// stdin once the layers are open), logging to Log.
type MountSpec struct {
	Ref, Manifest string
	Layer         int
	Dir           string
	Log           string
}

// detachedWait bounds how long a detached mount's process may take to
// mount: opening the layers fetches their TOCs if the cache lacks them.
const detachedWait = 2 * time.Minute

// mountDetached has r's process mount r and waits until the mount is up:
// the process the pull started for r's image (startPending), told r's
// directory now, or else a new one. A live mount already there (a
// restart's, or another process's) is kept; a dead one is detached and
// served anew. r.mu is held.
func (s *Snapshotter) mountDetached(ctx context.Context, r *remoteSnapshot) error {
	if liveFUSE(r.dir) {
		r.detached = true
		return nil
	}
	unix.Unmount(r.dir, unix.MNT_DETACH) // a dead server's mount, if any
	s.mu.Lock()
	p := s.pending[r.manifest]
	if p != nil && p.layer == r.layer {
		delete(s.pending, r.manifest)
	} else {
		p = nil
	}
	s.mu.Unlock()
	how := "started by the pull"
	if p != nil {
		_, err := io.WriteString(p.stdin, r.dir+"\n")
		p.stdin.Close()
		if err != nil {
			p = nil // it has ended: start another
		}
	}
	if p == nil {
		how = "started now"
		var err error
		if p, err = s.startDetached(MountSpec{Ref: r.ref, Manifest: r.manifest, Layer: r.layer, Dir: r.dir}); err != nil {
			return fmt.Errorf("snapshotter: mount %s: %w", r.name, err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, detachedWait)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !liveFUSE(r.dir) {
		select {
		case err := <-p.exited:
			if liveFUSE(r.dir) {
				break // another process serves it (see ServeDetached)
			}
			return fmt.Errorf("snapshotter: mount %s: its process ended before mounting (%v)%s", r.name, err, logTail(p.log))
		case <-ctx.Done():
			p.cmd.Process.Kill()
			return fmt.Errorf("snapshotter: mount %s: not mounted after %v: %w%s", r.name, detachedWait, ctx.Err(), logTail(p.log))
		case <-tick.C:
		}
	}
	r.detached = true
	s.logger.Printf("mounted layers 0-%d of %s (%s) on %s, served by process %d (%s)", r.layer, r.ref, r.manifest, r.dir, p.cmd.Process.Pid, how)
	return nil
}

// pendingMount is a detached mount's process, started: it opens its
// image's layers, and mounts them once it reads the directory on stdin.
type pendingMount struct {
	layer  int
	cmd    *exec.Cmd
	stdin  io.WriteCloser // where it reads its directory; nil when its command line has it
	exited chan error     // Wait's result
	log    string
}

// startDetached starts the process of a detached mount of spec, in a
// session of its own, logging to ROOT/detached/MANIFEST-HEX-LAYER.log
// (appended to: a process served anew keeps the dead one's last words).
// With no spec.Dir, it reads the directory from stdin once it is ready.
func (s *Snapshotter) startDetached(spec MountSpec) (*pendingMount, error) {
	dir := filepath.Join(s.root, "detached")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	spec.Log = filepath.Join(dir, fmt.Sprintf("%s-%d.log", strings.TrimPrefix(spec.Manifest, "sha256:"), spec.Layer))
	logf, err := os.OpenFile(spec.Log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := s.detached(spec)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	p := &pendingMount{layer: spec.Layer, cmd: cmd, exited: make(chan error, 1), log: spec.Log}
	if spec.Dir == "" {
		if p.stdin, err = cmd.StdinPipe(); err != nil {
			return nil, err
		}
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start its process: %w", err)
	}
	go func() { p.exited <- cmd.Wait() }() // reaps it, whenever it ends
	return p, nil
}

// startPending starts, from the pull's first lazy Prepare of an image, the
// process that will serve the mount of its top lazy layer (top): it
// fetches the TOCs, opens the layers and starts fetching ahead while the
// pull goes on, and mounts once mountDetached tells it the snapshot's
// directory. Once per image, and not for one whose top snapshot is
// committed already (a second pull's race); a failure is left to
// mountDetached, which then starts a process of its own.
func (s *Snapshotter) startPending(ref, manifest string, top int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending[manifest] != nil {
		return
	}
	for _, r := range s.remotes {
		if r.manifest == manifest && r.layer == top {
			return
		}
	}
	p, err := s.startDetached(MountSpec{Ref: ref, Manifest: manifest, Layer: top})
	if err != nil {
		s.logger.Printf("snapshotter: %s: start its mount's process: %v", ref, err)
		return
	}
	s.pending[manifest] = p
}

// endPending ends the waiting process of an image none of whose
// snapshots is left: it reads the end of its stdin, and exits.
func (s *Snapshotter) endPending(manifest string) {
	s.mu.Lock()
	p := s.pending[manifest]
	delete(s.pending, manifest)
	s.mu.Unlock()
	if p != nil {
		p.stdin.Close()
	}
}

// mountEarly makes the detached mount of the remote snapshot name, the
// image's top lazy layer, when the pull commits it: the process the pull
// started (startPending) is told the directory and mounts, while
// containerd goes on and creates the container, whose Mounts waits for it
// (on r.mu). A failure is only logged: that Mounts tries again.
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

// unmountDir unmounts a remote snapshot's mount; a mount something has
// open is detached.
func unmountDir(dir string) error {
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
	DirFrom  io.Reader // where a Spec without a Dir reads it: one line
	Cache    *cache.Store
	Insecure bool
	Logger   *log.Logger
}

// ServeDetached serves one detached mount (see MountSpec) until it is
// unmounted: the body of the process Options.Detached starts. A spec
// without a directory opens the layers (and starts fetching ahead), then
// reads the directory; the end of its input instead ends it: the image
// was never run, or the snapshotter went away before the pull finished.
func ServeDetached(ctx context.Context, o ServeOptions) error {
	sp := o.Spec
	if sp.Ref == "" || sp.Manifest == "" || sp.Layer < 0 || o.Cache == nil || (sp.Dir == "" && o.DirFrom == nil) {
		return errors.New("snapshotter: a detached mount needs a reference, a manifest digest, a layer, a directory and a cache")
	}
	is := newImages(o.Cache, o.Insecure, true, detachedMemoryChunks)
	defer is.close()
	dir := func() (string, error) {
		if sp.Dir == "" {
			line, err := bufio.NewReader(o.DirFrom).ReadString('\n')
			if err != nil {
				return "", errNoDir
			}
			sp.Dir = strings.TrimSuffix(line, "\n")
		}
		if liveFUSE(sp.Dir) {
			// A snapshotter restarted while this mount was being made may
			// start a second process for it: the first one serves it.
			return "", errServed
		}
		return sp.Dir, nil
	}
	srv, im, err := is.mount(ctx, sp.Ref, sp.Manifest, sp.Layer, dir, o.Logger)
	switch {
	case errors.Is(err, errNoDir), errors.Is(err, errServed):
		o.Logger.Printf("layers 0-%d of %s (%s): %v; done", sp.Layer, sp.Ref, sp.Manifest, err)
		return nil
	case err != nil:
		return fmt.Errorf("snapshotter: mount layers 0-%d of %s: %w", sp.Layer, sp.Ref, err)
	}
	o.Logger.Printf("mounted layers 0-%d of %s (%s) on %s", sp.Layer, sp.Ref, sp.Manifest, sp.Dir)
	stop := status.Start(o.Logger, statusOf(sp.Ref, sp.Manifest, sp.Dir), im.collect(sp.Layer, o.Cache))
	srv.Wait()
	stop()
	return nil
}

// errNoDir and errServed end a detached mount's process before it
// mounts: it was given no directory, or the directory is served already.
var (
	errNoDir  = errors.New("no directory to mount them on")
	errServed = errors.New("their directory is served already")
)

// statusOf is the status record of a remote snapshot's mount.
func statusOf(ref, manifest, dir string) *status.Mount {
	src, err := digestRef(ref, manifest)
	if err != nil {
		src = ref
	}
	return &status.Mount{Mountpoint: dir, Source: src, PID: os.Getpid(), Started: time.Now()}
}
