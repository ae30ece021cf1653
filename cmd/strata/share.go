package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/stratafs/strata/status"
	"github.com/stratafs/strata/unionfs"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

// A --kernel-overlay --upper mount of a registry image puts its overlay on
// the node's one read-only mount of that image (the same manifest digest),
// at STRATA_RUNTIME_DIR/images/DIGEST: a second container of an image then
// starts on a warm page cache and fetches nothing, and N containers started
// together fetch each chunk once.
//
// The image mount is served by an image server: a strata process of its
// own (strata mount --image-server, in a session of its own, logging to
// DIGEST.log), started by the first mount that finds no live one. Every
// mount process only puts its overlay on the image and ends when that is
// unmounted, whatever the order; the image server ends when the last
// overlay on the image is gone. One flock per image, held only while a
// process checks, starts, attaches or unmounts, orders all of this, so an
// overlay is never put on an image mount being taken down. An image mount
// whose server died (statfs ENOTCONN) is detached and served anew.

// sharedImage is the image mount directory of one image digest, and its
// lock.
type sharedImage struct {
	dir  string
	lock *os.File // non-nil while held
}

// imageDir is where the image with this manifest digest is mounted.
func imageDir(digest string) (string, error) {
	hex := strings.TrimPrefix(digest, "sha256:")
	if hex == digest || len(hex) != 64 || strings.ContainsAny(hex, "./") {
		return "", fmt.Errorf("image digest %q: want sha256:<64 hex digits>", digest)
	}
	parent, err := imagesDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(parent, hex), nil
}

// imagesDir is where --kernel-overlay mounts their images, made if
// missing, for root only.
func imagesDir() (string, error) {
	parent := filepath.Join(status.Dir(), "images")
	return parent, os.MkdirAll(parent, 0o700)
}

// lockImage takes the lock of the image mounted (or to be) at dir.
func lockImage(dir string) (*sharedImage, error) {
	s := &sharedImage{dir: dir}
	return s, s.relock()
}

func (s *sharedImage) relock() error {
	f, err := os.OpenFile(s.dir+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	s.lock = f
	return nil
}

func (s *sharedImage) unlock() {
	if s.lock != nil {
		s.lock.Close() // drops the flock
		s.lock = nil
	}
}

// live reports whether an image server serves the image now. A mount
// whose server is gone is detached, so that a new one can serve it.
func (s *sharedImage) live(logger *log.Logger) bool {
	mounted, err := unionfs.IsMountpoint(s.dir)
	if err == nil && mounted {
		// The kernel answers stat from its cache; statfs always asks the
		// server.
		var st unix.Statfs_t
		err = unix.Statfs(s.dir, &st)
	}
	if errors.Is(err, unix.ENOTCONN) {
		logger.Printf("image mount %s: its server is gone; serving it anew", s.dir)
		unix.Unmount(s.dir, unix.MNT_DETACH)
		return false
	}
	return err == nil && mounted
}

// serverFlags are the mount flags an image server takes over from the
// mount that starts it: those about the image and its fetching.
var serverFlags = []string{"insecure", "platform", "cache", "cache-size", "no-cache", "prefetch", "timeout", "debug"}

// startServer starts an image server for ref on s.dir, which the caller
// holds locked, and returns once it serves the image, or with its error.
func (s *sharedImage) startServer(ctx context.Context, c *cli.Context, logger *log.Logger, ref string) error {
	if err := os.Mkdir(s.dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	args := []string{"mount", "--image-server"}
	for _, name := range serverFlags {
		if c.IsSet(name) {
			args = append(args, "--"+name+"="+fmt.Sprint(c.Value(name)))
		}
	}
	args = append(args, ref, s.dir)
	logPath := s.dir + ".log"
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(self, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // outlives this mount
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("image server: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	w, err := unionfs.WatchMounts()
	if err != nil {
		return err
	}
	defer w.Close()
	for {
		if s.live(logger) {
			return nil
		}
		select {
		case err := <-exited:
			return fmt.Errorf("image server (log %s) exited: %v%s", logPath, err, logTail(logPath))
		case <-ctx.Done():
			cmd.Process.Signal(syscall.SIGTERM)
			return ctx.Err()
		default:
		}
		w.Wait(50 * time.Millisecond)
	}
}

// logTail is the last line of a log, for an error message.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return ": " + lines[len(lines)-1]
}

// holdServerLock marks this process as the image server of dir until the
// returned file is closed, or the process ends: it holds a shared flock on
// DIR.server.
func holdServerLock(dir string) (*os.File, error) {
	f, err := os.OpenFile(dir+".server", os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// waitServerGone returns, after a mount's own overlay is gone, once the
// image server has exited, unless another overlay still uses the image
// (or 10 s passed): a node that stops its last container then finds
// nothing of it left running.
func waitServerGone(dir string) {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if n, err := unionfs.OverlaysOn(dir); err != nil || n > 0 {
			return
		}
		f, err := os.Open(dir + ".server")
		if err != nil {
			return
		}
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		f.Close()
		if err == nil {
			return
		}
	}
}

// serveUntilUnused unmounts the image at dir once no overlay in this
// mount namespace has it as its lower layer. (Unmounting it does not fail
// while overlays use it: overlayfs holds layers by private clones of their
// mounts; the FUSE connection, and this server with it, lives on until the
// last overlay of the image is unmounted in every namespace.) The first
// check waits for the lock, which the mount that started this server
// holds until its overlay is on.
func serveUntilUnused(logger *log.Logger, dir string) {
	s := &sharedImage{dir: dir}
	w, err := unionfs.WatchMounts()
	if err != nil {
		logger.Printf("image %s: %v", dir, err)
		return
	}
	defer w.Close()
	for {
		if err := s.relock(); err != nil {
			logger.Printf("image %s: %v", dir, err)
			return
		}
		used, err := unionfs.OverlaysOn(dir)
		if err == nil && used == 0 {
			err = unix.Unmount(dir, 0)
			if err == nil {
				os.Remove(dir)
				os.Remove(dir + ".log")
			}
		}
		s.unlock()
		switch {
		case err != nil:
			logger.Printf("image %s: %v", dir, err)
			return
		case used == 0:
			return // served until the kernel ends the connection
		}
		w.Wait(10 * time.Second)
	}
}

// attachOverlay puts the container's overlay on the image mount.
func attachOverlay(c *cli.Context, image, mnt string) error {
	return unionfs.MountOverlay(image, c.String("upper"), workdir(c), mnt)
}

// detach unmounts mnt. While it is busy, it waits until it is unmounted
// some other way (strata umount, umount -l).
func detach(logger *log.Logger, mnt string) {
	err := unix.Unmount(mnt, 0)
	if err == nil || errors.Is(err, unix.EINVAL) { // EINVAL: already unmounted
		return
	}
	logger.Printf("unmount %s: %v; strata stops once it is unmounted", mnt, err)
	if err := unionfs.WaitUnmounted(context.Background(), mnt); err != nil {
		logger.Printf("unmount %s: %v", mnt, err)
	}
}

// mountShared is a --kernel-overlay --upper mount of a registry image:
// the overlay on the shared image mount, kept until it is unmounted.
func mountShared(ctx context.Context, c *cli.Context, logger *log.Logger, src *imageSource, mnt string) error {
	dir, err := imageDir(src.img.Digest())
	if err != nil {
		return err
	}
	s, err := lockImage(dir)
	if err != nil {
		return err
	}
	defer s.unlock()
	if !s.live(logger) {
		// The server resolves the image by digest, from the cache when
		// this mount has just put it there.
		if err := s.startServer(ctx, c, logger, src.img.Name()); err != nil {
			return err
		}
	}
	err = attachOverlay(c, dir, mnt)
	s.unlock()
	if err != nil {
		return err
	}
	logger.Printf("mounted %s on %s (image served at %s)", src.img.Name(), mnt, dir)
	noLayers := func() ([]status.Layer, *status.Cache) { return nil, nil }
	stopStatus := status.Start(logger, &status.Mount{Mountpoint: mnt, Source: src.img.Name(), PID: os.Getpid(), Started: time.Now(), SharedImage: dir}, noLayers)
	if unionfs.WaitUnmounted(ctx, mnt) != nil {
		detach(logger, mnt)
	}
	waitServerGone(dir)
	stopStatus()
	return nil
}
