package unionfs

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"strconv"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/stratafs/strata/layer"
	"golang.org/x/sys/unix"
)

// DefaultTimeout is how long the kernel caches entries and attributes
// unless WithTimeout says otherwise.
const DefaultTimeout = time.Hour

// Server is one mounted union.
type Server struct {
	srv   *fuse.Server
	union *union
}

// Mount mounts the union of layers (lowest first) on mountpoint and serves
// it in the background until Unmount. ctx bounds the mounting only.
func Mount(ctx context.Context, mountpoint string, layers []layer.Layer, opts ...Option) (*Server, error) {
	var o options
	o.setDefaults()
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if len(layers) == 0 {
		return nil, errors.New("no layers: give at least one")
	}
	if o.openless && o.upper != "" {
		return nil, errors.New("open-less mount: read-only mounts only, not with an upper directory")
	}
	u := &union{layers: layers, inos: newInoTable(), opts: o, noXattrs: o.upper == "" && noXattrs(layers)}
	root, err := u.newRoot(ctx)
	if err != nil {
		u.close()
		return nil, err
	}
	srv, err := mountFS(mountpoint, root, u.fuseOptions(), o.openless)
	if err != nil {
		u.close()
		return nil, fmt.Errorf("mount %s: %w", mountpoint, err)
	}
	if err := setReadAhead(mountpoint, readAheadKB); err != nil {
		o.logger.Printf("mount %s: read-ahead stays at the kernel's default: %v", mountpoint, err)
	}
	return &Server{srv: srv, union: u}, nil
}

// readAheadKB is the kernel read-ahead of a strata mount, which also caps
// the size of one FUSE READ of a file served through strata: at the
// default 128 KiB, a sequential reader of a lazy file costs a round trip to
// strata per 128 KiB; 1 MiB (MaxWrite, hence go-fuse's max_pages) makes it
// one per MiB. The kernel grows a read-ahead window only for sequential
// reads, so random readers do not fetch more.
const readAheadKB = 1024

// setReadAhead sets the read-ahead of the FUSE connection's backing device,
// found from the mountpoint's device number.
func setReadAhead(mountpoint string, kb int) error {
	var st unix.Stat_t
	if err := unix.Stat(mountpoint, &st); err != nil {
		return err
	}
	p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
	return os.WriteFile(p, []byte(strconv.Itoa(kb)), 0)
}

func (u *union) newRoot(ctx context.Context) (*node, error) {
	root := &node{u: u}
	u.root = root
	for i := len(u.layers) - 1; i >= 0; i-- {
		root.ldirs = append(root.ldirs, i)
	}
	top, err := u.layers[len(u.layers)-1].Root(ctx)
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", u.layers[len(u.layers)-1], err)
	}
	if top.Type != layer.TypeDir {
		return nil, fmt.Errorf("layer %s: root is not a directory", u.layers[len(u.layers)-1])
	}
	root.lower = &top
	root.llayer = len(u.layers) - 1
	for i := len(u.layers) - 2; i >= 0 && root.lower.Implied; i-- {
		below, err := u.layers[i].Root(ctx)
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", u.layers[i], err)
		}
		root.lower = inherit(root.lower, &below)
	}
	if u.opts.upper == "" {
		return root, nil
	}
	if u.upper, err = openUpper(u.opts.upper); err != nil {
		return nil, err
	}
	if err := u.upper.probe(); err != nil {
		return nil, fmt.Errorf("upper directory %s: %w", u.opts.upper, err)
	}
	rootUp, err := statAt(u.upper.fd, ".")
	if err != nil {
		return nil, fmt.Errorf("upper directory %s: %w", u.opts.upper, err)
	}
	if rootUp.opaque {
		root.ldirs = nil
	}
	root.upper.Store(true)
	return root, nil
}

// probe checks, by doing it once, everything strata will ask of the upper
// directory's filesystem: whiteouts (device nodes), trusted.* xattrs and
// unnamed temporary files.
func (d *upperDir) probe() error {
	fd, err := d.openDir("")
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	name := tmpName()
	if err := mkWhiteout(fd, name); err != nil {
		return fmt.Errorf("cannot make whiteouts (device nodes) here: %w", err)
	}
	unix.Unlinkat(fd, name, 0)
	if err := unix.Mkdirat(fd, name, 0o700); err != nil {
		return err
	}
	err = setOpaque(fd, name)
	unix.Unlinkat(fd, name, unix.AT_REMOVEDIR)
	if err != nil {
		return fmt.Errorf("cannot hold trusted.* xattrs (opaque directories): %w", err)
	}
	tmp, err := unix.Openat(fd, ".", unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("cannot make O_TMPFILE files (atomic copy-up): %w", err)
	}
	unix.Close(tmp)
	return nil
}

func (u *union) fuseOptions() *fs.Options {
	timeout := u.opts.timeout
	mo := fuse.MountOptions{
		AllowOther:           true,
		DirectMount:          true,
		FsName:               u.opts.fsName,
		Name:                 "strata",
		Options:              []string{"default_permissions"},
		MaxWrite:             1 << 20,
		EnableSymlinkCaching: true,
		// The kernel then answers POSIX ACL xattrs (system.posix_acl_*)
		// from its own cache, enforces them, and asks strata once per
		// inode: `ls -l` checks them on every entry.
		EnableAcl: true,
		// strata answers READs from memory (ReadResultData): go-fuse would
		// copy them into a pipe to splice it, and a 1 MiB READ does not
		// fit the default maximum pipe size, so every one would fail over
		// to a plain write after a log line.
		DisableSplice: true,
		Debug:         u.opts.debug,
		Logger:        u.opts.logger,
	}
	if u.upper == nil {
		mo.Options = append(mo.Options, "ro")
	}
	return &fs.Options{
		MountOptions:    mo,
		EntryTimeout:    &timeout,
		AttrTimeout:     &timeout,
		NegativeTimeout: &timeout,
		RootStableAttr:  &fs.StableAttr{Ino: 1},
		Logger:          log.New(u.opts.logger.Writer(), "go-fuse: ", log.LstdFlags),
		NullPermissions: true,
	}
}

func (u *union) close() {
	if u.upper != nil {
		u.upper.close()
	}
}

// Wait blocks until the union is unmounted.
func (s *Server) Wait() {
	s.srv.Wait()
	s.union.close()
}

// Unmount unmounts the union; Wait then returns.
func (s *Server) Unmount() error { return s.srv.Unmount() }
