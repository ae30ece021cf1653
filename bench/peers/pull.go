package peers

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/klauspost/compress/gzip"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// FullPull is the classic start, minus the mount: fetch every layer blob of
// ref (a gzip image) and extract each into its own directory under dir,
// in overlayfs form. It returns the layer directories, lowest first.
// Layers are fetched and extracted in parallel and each blob is streamed
// into its extraction (no temporary download), which is faster than
// containerd's download-then-unpack: the baseline errs in its own favour.
func FullPull(ctx context.Context, ref, dir string) ([]string, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, err
	}
	img, err := remote.Image(r, remote.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("manifest of %s: %w", ref, err)
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	dirs := make([]string, len(layers))
	g, gctx := errgroup.WithContext(ctx)
	for i, l := range layers {
		dirs[i] = filepath.Join(dir, fmt.Sprintf("layer%d", i))
		g.Go(func() error {
			rc, err := l.Compressed() // digest-verified as it is read
			if err != nil {
				return err
			}
			defer rc.Close()
			return ExtractGzip(gctx, rc, dirs[i])
		})
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	return dirs, nil
}

// MountOverlay mounts kernel overlayfs on mnt over lowers (lowest first)
// with upper and work directories, created if missing. The options are the
// kernel's defaults on purpose: the peer is overlayfs as a container
// runtime mounts it, not tuned for the test.
func MountOverlay(mnt, upper, work string, lowers []string) error {
	for _, d := range []string{upper, work, mnt} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := unix.Mount("overlay", mnt, "overlay", 0, OverlayOptions(upper, work, lowers)); err != nil {
		return fmt.Errorf("mount overlay on %s: %w", mnt, err)
	}
	return nil
}

// OverlayOptions is the overlayfs (and fuse-overlayfs) option string;
// lowers go in lowest first, overlayfs wants them topmost first.
func OverlayOptions(upper, work string, lowers []string) string {
	rev := make([]string, len(lowers))
	for i, l := range lowers {
		rev[len(lowers)-1-i] = l
	}
	return fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", strings.Join(rev, ":"), upper, work)
}

// ExtractGzip unpacks a gzip tar layer into dir, turning OCI whiteouts into
// overlayfs ones (char device 0/0; trusted.overlay.opaque=y on the dir),
// so the directories can be overlayfs lowers as they are.
func ExtractGzip(ctx context.Context, blob io.Reader, dir string) error {
	zr, err := gzip.NewReader(blob)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tr := tar.NewReader(zr)
	for {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if err := extractEntry(tr, h, dir); err != nil {
			return fmt.Errorf("%s: %w", h.Name, err)
		}
	}
	// Reading to the end makes a verifying reader check the digest.
	_, err = io.Copy(io.Discard, blob)
	return err
}

func extractEntry(tr *tar.Reader, h *tar.Header, dir string) error {
	rel := path.Clean("/" + h.Name)
	if rel == "/" {
		return nil
	}
	p := filepath.Join(dir, rel)
	base := path.Base(rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	switch {
	case base == ".wh..wh..opq":
		return unix.Setxattr(filepath.Dir(p), "trusted.overlay.opaque", []byte("y"), 0)
	case strings.HasPrefix(base, ".wh."):
		return unix.Mknod(filepath.Join(filepath.Dir(p), base[4:]), unix.S_IFCHR, 0)
	}
	mode := uint32(h.Mode) & 0o7777
	var err error
	switch h.Typeflag {
	case tar.TypeDir:
		if err = os.Mkdir(p, 0o755); os.IsExist(err) {
			err = nil
		}
	case tar.TypeReg:
		err = writeFile(tr, p)
	case tar.TypeSymlink:
		return os.Symlink(h.Linkname, p)
	case tar.TypeLink:
		return os.Link(filepath.Join(dir, path.Clean("/"+h.Linkname)), p)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		kind := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[h.Typeflag]
		err = unix.Mknod(p, kind|mode, int(unix.Mkdev(uint32(h.Devmajor), uint32(h.Devminor))))
	default:
		return nil
	}
	if err != nil {
		return err
	}
	return setMeta(p, h, mode)
}

func writeFile(r io.Reader, p string) error {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// setMeta applies owner, mode (after chown, which clears setuid) and mtime.
func setMeta(p string, h *tar.Header, mode uint32) error {
	if h.Uid != 0 || h.Gid != 0 {
		if err := os.Lchown(p, h.Uid, h.Gid); err != nil {
			return err
		}
	}
	if err := syscall.Chmod(p, mode); err != nil {
		return err
	}
	ts := []unix.Timespec{unix.NsecToTimespec(h.ModTime.UnixNano()), unix.NsecToTimespec(h.ModTime.UnixNano())}
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
}
