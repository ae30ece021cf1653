package unionfs

import (
	"errors"
	"fmt"
	"log"
	"os"
	"time"
)

// Option configures a mount.
type Option func(*options) error

type options struct {
	upper       string        // upper directory; "" mounts read-only
	timeout     time.Duration // entry and attribute timeout given to the kernel
	passthrough bool          // ask the kernel for FUSE passthrough of local files
	openless    bool          // the kernel opens files without asking strata
	debug       bool          // log every FUSE request
	logger      *log.Logger
	fsName      string // shown as the mount's source in /proc/mounts
}

func (o *options) setDefaults() {
	o.timeout = time.Hour
	o.passthrough = true
	o.logger = log.New(os.Stderr, "strata: ", log.LstdFlags)
	o.fsName = "strata"
}

// WithUpper makes the mount writable: every change lands in dir, in kernel
// overlayfs's upper-directory format. dir must exist, be a directory and sit
// on a filesystem that holds trusted.* xattrs and device nodes. Default: no
// upper, the mount is read-only and writes fail with EROFS.
func WithUpper(dir string) Option {
	return func(o *options) error {
		if dir == "" {
			return errors.New("upper directory: empty path")
		}
		o.upper = dir
		return nil
	}
}

// WithTimeout sets how long the kernel may cache entries and attributes.
// strata is the only writer under the mount and invalidates what it changes,
// so the default is long: one hour. Zero makes the kernel ask every time.
func WithTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d < 0 {
			return fmt.Errorf("timeout %v: must not be negative", d)
		}
		o.timeout = d
		return nil
	}
}

// WithPassthrough turns FUSE passthrough of local files on or off. Default
// on; it takes effect only where the kernel (>= 6.9) and the caller's
// privileges allow, and falls back to reads through strata elsewhere.
func WithPassthrough(on bool) Option {
	return func(o *options) error { o.passthrough = on; return nil }
}

// WithOpenless makes the kernel open and close files without asking
// strata (FUSE no-open): the first OPEN is answered ENOSYS, after which the
// kernel sends none, nor RELEASE or FLUSH, and keeps each file's page cache
// across opens. An open then costs what it costs on a local filesystem,
// where it otherwise costs two round trips to strata (OPEN, RELEASE); reads
// that miss the page cache come to strata without a file handle and are
// served from the node. Read-only mounts only (Mount refuses it with
// WithUpper): copy-up needs to see opens for writing. Passthrough is off in
// this mode, as the kernel needs an OPEN to set it up. Default off.
func WithOpenless(on bool) Option {
	return func(o *options) error { o.openless = on; return nil }
}

// WithDebug logs every FUSE request and reply. Default off.
func WithDebug(on bool) Option {
	return func(o *options) error { o.debug = on; return nil }
}

// WithLogger sets where errors that cannot be returned to a caller are
// logged (an EIO's cause, say). Default: standard error.
func WithLogger(l *log.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return errors.New("logger: nil")
		}
		o.logger = l
		return nil
	}
}

// WithFSName sets the source name shown in /proc/mounts. Default "strata".
func WithFSName(name string) Option {
	return func(o *options) error {
		if name == "" {
			return errors.New("fs name: empty")
		}
		o.fsName = name
		return nil
	}
}
