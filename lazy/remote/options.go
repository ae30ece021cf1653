package remote

import (
	"errors"
	"fmt"
	digest "github.com/opencontainers/go-digest"
	"log/slog"
	"net/http"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Option configures [Resolve]. Each With… function documents its default and
// rejects values that make no sense, so a bad flag fails at Resolve, not at
// the first read.
type Option func(*options) error

// Defaults, chosen for a registry on the same continent: a 64 MiB range at
// 10 MB/s still fits in one request timeout, and a registry that is down is
// reported within a couple of minutes, never silently waited on.
const (
	DefaultMaxInFlight    = 8
	DefaultRetries        = 6
	DefaultRequestTimeout = 60 * time.Second
	DefaultRetryBudget    = 2 * time.Minute
	DefaultMinBackoff     = 200 * time.Millisecond
	DefaultMaxBackoff     = 8 * time.Second

	// maxRetryAfter caps a server's Retry-After: a registry asking for an
	// hour is treated as down, not waited on.
	maxRetryAfter = 30 * time.Second
)

type options struct {
	insecure       bool
	platform       *v1.Platform // nil: the host's
	maxInFlight    int
	retries        int
	requestTimeout time.Duration
	retryBudget    time.Duration
	minBackoff     time.Duration
	maxBackoff     time.Duration
	transport      http.RoundTripper // nil: a clone of remote.DefaultTransport
	keychain       authn.Keychain
	logger         *slog.Logger
	store          Store // nil: nothing kept
	refs           Refs  // nil: every tag asked of the registry
	pull           Pull
}

// Store keeps content by its digest and returns only bytes that match it
// (package cache's Store is one). Resolve keeps manifests and configs in
// it, so that an image named by digest resolves again with no request.
type Store interface {
	Get(d digest.Digest) ([]byte, bool)
	Put(d digest.Digest, data []byte)
}

// WithStore keeps the manifests and configs Resolve fetches in s, and
// takes them from s when a reference names them by digest: a tag still
// asks the registry what it points to now, unless WithRefs answers it.
func WithStore(s Store) Option {
	return func(o *options) error {
		o.store = s
		return nil
	}
}

// Refs remembers what a tag pointed to when this node last resolved it
// (package cache's Store is one).
type Refs interface {
	Ref(name string) (digest.Digest, bool)
	SetRef(name string, d digest.Digest) error
}

// Pull says when Resolve asks the registry what a tag points to, as
// docker's and nerdctl's --pull do. A reference by digest never needs it.
type Pull int

const (
	// PullMissing asks only for a tag this node has not resolved before,
	// and otherwise takes the digest it got then: a second container of
	// an image starts with no request, and while the registry is down.
	PullMissing Pull = iota
	// PullAlways asks the registry every time, and records the answer.
	PullAlways
	// PullNever never asks: a tag this node has not resolved is an error
	// (ErrNotPulled).
	PullNever
)

// ParsePull reads "missing", "always" or "never".
func ParsePull(s string) (Pull, error) {
	switch s {
	case "missing":
		return PullMissing, nil
	case "always":
		return PullAlways, nil
	case "never":
		return PullNever, nil
	}
	return 0, fmt.Errorf("pull policy %q: want missing, always or never", s)
}

// WithRefs records in r the digest each tag resolves to, and resolves
// tags by r as p says. Without it every tag is asked of the registry.
func WithRefs(r Refs, p Pull) Option {
	return func(o *options) error {
		if p < PullMissing || p > PullNever {
			return fmt.Errorf("pull policy %d", p)
		}
		o.refs, o.pull = r, p
		return nil
	}
}

func makeOptions(opts []Option) (*options, error) {
	o := &options{}
	o.setDefaults()
	for _, opt := range opts {
		if err := opt(o); err != nil {
			return nil, fmt.Errorf("remote: %w", err)
		}
	}
	if o.minBackoff > o.maxBackoff {
		return nil, fmt.Errorf("remote: backoff min %v above max %v", o.minBackoff, o.maxBackoff)
	}
	return o, nil
}

func (o *options) setDefaults() {
	o.maxInFlight = DefaultMaxInFlight
	o.retries = DefaultRetries
	o.requestTimeout = DefaultRequestTimeout
	o.retryBudget = DefaultRetryBudget
	o.minBackoff = DefaultMinBackoff
	o.maxBackoff = DefaultMaxBackoff
	o.keychain = authn.DefaultKeychain
	o.logger = slog.New(slog.DiscardHandler)
}

// hostPlatform is what an image index is resolved to without WithPlatform.
// The variant is left empty so that "linux/arm64" matches an index entry
// with or without "v8".
func hostPlatform() v1.Platform {
	return v1.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}
}

// WithInsecure allows plain HTTP and skips TLS verification for the
// registry (the CLI's --insecure). Loopback registries (localhost,
// 127.0.0.1, [::1]) may use plain HTTP without it. Default: off.
func WithInsecure(insecure bool) Option {
	return func(o *options) error {
		o.insecure = insecure
		return nil
	}
}

// WithPlatform picks the image out of an index by platform, written
// os/arch[/variant] ("linux/arm64/v8"). Default: the host's os/arch.
func WithPlatform(platform string) Option {
	return func(o *options) error {
		p, err := v1.ParsePlatform(platform)
		if err != nil {
			return fmt.Errorf("platform %q: %w", platform, err)
		}
		if p.OS == "" || p.Architecture == "" {
			return fmt.Errorf("platform %q: want os/arch[/variant]", platform)
		}
		o.platform = p
		return nil
	}
}

// WithMaxInFlight bounds the HTTP requests one image's blobs have open at
// once (they all go to one registry). Default: DefaultMaxInFlight.
func WithMaxInFlight(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("max in flight %d: must be at least 1", n)
		}
		o.maxInFlight = n
		return nil
	}
}

// WithRetries sets how many times a failed range request is retried (so one
// read makes at most n+1 requests, re-resolving an expired redirect aside).
// Zero disables retries. Default: DefaultRetries.
func WithRetries(n int) Option {
	return func(o *options) error {
		if n < 0 {
			return fmt.Errorf("retries %d: must not be negative", n)
		}
		o.retries = n
		return nil
	}
}

// WithRequestTimeout bounds one HTTP request, from sending it to the last
// byte of its body. Default: DefaultRequestTimeout.
func WithRequestTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("request timeout %v: must be positive", d)
		}
		o.requestTimeout = d
		return nil
	}
}

// WithRetryBudget bounds one read from first request to last retry,
// backoff included: past it the read fails with the last error.
// Default: DefaultRetryBudget.
func WithRetryBudget(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("retry budget %v: must be positive", d)
		}
		o.retryBudget = d
		return nil
	}
}

// WithBackoff sets the first and the largest wait between retries; each
// wait doubles the previous one and is jittered by up to half.
// Default: DefaultMinBackoff, DefaultMaxBackoff.
func WithBackoff(minWait, maxWait time.Duration) Option {
	return func(o *options) error {
		if minWait <= 0 || maxWait <= 0 {
			return errors.New("backoff: waits must be positive")
		}
		o.minBackoff, o.maxBackoff = minWait, maxWait
		return nil
	}
}

// WithTransport sets the HTTP transport under authentication, for tests and
// for proxies. WithInsecure's TLS setting does not apply to it.
// Default: a clone of go-containerregistry's remote.DefaultTransport.
func WithTransport(t http.RoundTripper) Option {
	return func(o *options) error {
		if t == nil {
			return errors.New("transport: nil")
		}
		o.transport = t
		return nil
	}
}

// WithKeychain sets where credentials come from.
// Default: authn.DefaultKeychain (~/.docker/config.json, credential helpers).
func WithKeychain(k authn.Keychain) Option {
	return func(o *options) error {
		if k == nil {
			return errors.New("keychain: nil")
		}
		o.keychain = k
		return nil
	}
}

// WithLogger receives one Debug line per retried request and per
// re-resolved redirect. Failures are returned, not logged. Default: discard.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return errors.New("logger: nil")
		}
		o.logger = l
		return nil
	}
}
