package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/stratafs/strata/status"
	"github.com/stratafs/strata/unionfs"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

// A --kernel-overlay mount of a registry image shares the image's
// read-only mount with every other strata process that mounts the same
// image (the same manifest digest) on this node: the first process mounts
// it at STRATA_RUNTIME_DIR/images/DIGEST and serves it; later ones only put
// their overlay (or, without --upper, a bind mount) on it. So a second
// container of an image starts on a warm page cache and fetches nothing,
// and N containers started at once fetch each chunk once.
//
// The serving process stays until the last overlay on the image is gone,
// even when its own was unmounted first. One flock per image, held only
// while a process checks, mounts or unmounts, orders all of this: a
// process never puts an overlay on an image mount that is being taken
// down. An image mount whose server died (ENOTCONN) is detached and
// replaced.

// sharedImage is the image mount directory of one image digest, and its
// lock.
type sharedImage struct {
	dir  string
	lock *os.File // non-nil while held
}

// lockImage takes the lock of the image with the given manifest digest.
func lockImage(digest string) (*sharedImage, error) {
	hex := strings.TrimPrefix(digest, "sha256:")
	if hex == digest || len(hex) != 64 || strings.ContainsAny(hex, "./") {
		return nil, fmt.Errorf("image digest %q: want sha256:<64 hex digits>", digest)
	}
	parent := filepath.Join(status.Dir(), "images")
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return nil, err
	}
	s := &sharedImage{dir: filepath.Join(parent, hex)}
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

// live reports whether another process serves the image now. A mount
// whose server is gone is detached, so that this process can serve it.
func (s *sharedImage) live(logger *log.Logger) bool {
	mounted, err := unionfs.IsMountpoint(s.dir)
	if err == nil && mounted {
		// The kernel answers stat from its cache; statfs always asks the
		// server.
		var st unix.Statfs_t
		err = unix.Statfs(s.dir, &st)
	}
	if errors.Is(err, unix.ENOTCONN) {
		logger.Printf("image mount %s: its strata process is gone; serving it anew", s.dir)
		unix.Unmount(s.dir, unix.MNT_DETACH)
		return false
	}
	return err == nil && mounted
}

// prepare makes the directory the image is mounted on.
func (s *sharedImage) prepare() error {
	if err := os.Mkdir(s.dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return nil
}

// release unmounts the image once no overlay uses it, serving it until
// then, and removes its directory. It returns when the image is unmounted.
func (s *sharedImage) release(logger *log.Logger) {
	w, err := unionfs.WatchMounts()
	if err != nil {
		logger.Printf("image %s: %v", s.dir, err)
		return
	}
	defer w.Close()
	told := false
	for {
		if err := s.relock(); err != nil {
			logger.Printf("image %s: %v", s.dir, err)
			return
		}
		err := unix.Unmount(s.dir, 0)
		if err == nil || errors.Is(err, unix.EINVAL) {
			os.Remove(s.dir)
			s.unlock()
			return
		}
		s.unlock()
		if !errors.Is(err, unix.EBUSY) {
			logger.Printf("unmount image %s: %v", s.dir, err)
			return
		}
		if !told {
			logger.Printf("image %s: other containers still use it; serving it until they are gone", s.dir)
			told = true
		}
		w.Wait(time.Second)
	}
}

// attach puts the container's view of the image mount on mnt: overlayfs
// with the upper, or without one a read-only bind mount.
func attach(c *cli.Context, image, mnt string) error {
	if upper := c.String("upper"); upper != "" {
		return unionfs.MountOverlay(image, upper, workdir(c), mnt)
	}
	if err := unix.Mount(image, mnt, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s on %s: %w", image, mnt, err)
	}
	return nil
}

// detach undoes attach. While the mount is busy, it waits until it is
// unmounted some other way (strata umount, umount -l).
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
