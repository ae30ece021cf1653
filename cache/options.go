package cache

import (
	"errors"
	"log/slog"
	"time"
)

// Option configures Open.
type Option func(*options) error

type options struct {
	sync   bool
	logger *slog.Logger
}

// DefaultStaleAge is how old a temporary file must be before Open removes
// it. No Put takes anywhere near this long, so a file that old was left by
// a process that crashed or was killed mid-write.
const DefaultStaleAge = time.Hour

func (o *options) setDefaults() {
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
}

// WithSync makes Put fsync each entry and its directory before it counts as
// stored (default off: a lost entry after a power cut is only a miss, and
// its bytes can always be fetched again, so the cost of fsync on every
// chunk buys nothing but durability nobody needs).
func WithSync(on bool) Option {
	return func(o *options) error {
		o.sync = on
		return nil
	}
}

// WithLogger sets where failed reads and writes, corrupt entries and
// refused Puts are reported (default: discarded). Get and Put never return
// errors, so the log is the only place they show.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return errors.New("cache: nil logger")
		}
		o.logger = l
		return nil
	}
}
