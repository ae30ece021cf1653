package cache

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// DefaultDir is the node's cache, which every strata process (strata
// mount, strata-snapshotter) uses unless told otherwise, so that they
// share it.
const DefaultDir = "/var/lib/strata/cache"

// Option configures Open.
type Option func(*options) error

type options struct {
	sync     bool
	noCreate bool
	maxSize  int64
	logger   *slog.Logger
	// verifiedDir shares the memo of verified file entries; "" keeps it
	// in memory only.
	verifiedDir string
	hooks       testHooks
}

// testHooks let tests see inside the background eviction without timing
// it. Production code never sets them.
type testHooks struct {
	// sweep runs at the start of every sweep's scan, in the goroutine
	// doing it.
	sweep func()
	// checked runs after each check of the usage record by the background
	// goroutine.
	checked func()
}

// DefaultStaleAge is how old a temporary file must be before Open or GC
// removes it (and then only if no writer still holds its lock). No Put
// takes anywhere near this long between two writes, so a file that old
// and unlocked was left by a process that crashed or was killed mid-write.
const DefaultStaleAge = time.Hour

func (o *options) setDefaults() {
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
}

// WithSync makes Put and PutFile fsync each entry and its directory before
// it counts as stored (default off: a lost entry after a power cut is only
// a miss, and its bytes can always be fetched again, so the cost of fsync
// on every chunk buys nothing but durability nobody needs).
func WithSync(on bool) Option {
	return func(o *options) error {
		o.sync = on
		return nil
	}
}

// WithLogger sets where failed reads and writes, corrupt entries, refused
// Puts and eviction passes are reported (default: discarded). Get and Put
// never return errors, so the log is the only place they show.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return errors.New("cache: nil logger")
		}
		o.logger = l
		return nil
	}
}

// WithMaxSize caps the bytes of all entries, chunks and files together, at
// n (default 0: no cap). Over the cap, a goroutine the Store owns evicts
// the least recently used entries until the cache is back under 90% of
// it; Close stops that goroutine. Entries larger than n are
// refused. See the package documentation for how usage is tracked.
func WithMaxSize(n int64) Option {
	return func(o *options) error {
		if n < 0 {
			return fmt.Errorf("cache: negative max size %d", n)
		}
		o.maxSize = n
		return nil
	}
}

// WithCreate says whether Open creates the cache directory and its
// subdirectories (default true). Tools that only inspect or trim an
// existing cache pass false: Open then writes nothing (it neither removes
// stale temp files nor starts eviction, whatever the cap), and fails with
// an error wrapping ErrNotCache when the directory holds no cache.
func WithCreate(on bool) Option {
	return func(o *options) error {
		o.noCreate = !on
		return nil
	}
}

// withTestHooks sets the test hooks.
func withTestHooks(h testHooks) Option {
	return func(o *options) error {
		o.hooks = h
		return nil
	}
}
