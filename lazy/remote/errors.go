package remote

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Sentinels, tested with errors.Is. Every error from this package wraps one
// of them or the caller's context error.
var (
	// ErrInvalidReference: the reference does not parse.
	ErrInvalidReference = errors.New("invalid reference")
	// ErrNotFound: the registry does not have the repository, manifest or
	// blob (404, MANIFEST_UNKNOWN, BLOB_UNKNOWN, NAME_UNKNOWN).
	ErrNotFound = errors.New("not found")
	// ErrNoPlatform: an image index has no image for the wanted platform.
	ErrNoPlatform = errors.New("no image for platform")
	// ErrUnauthorized: the registry refused the credentials, or there were
	// none and it wants some (401, 403).
	ErrUnauthorized = errors.New("unauthorized")
	// ErrRange: the range asked for lies outside the blob, or the registry
	// says so (416). Never retried.
	ErrRange = errors.New("range not satisfiable")
	// ErrBadResponse: an answer that does not answer the request (a
	// Content-Range or length other than asked, a body shorter than its
	// range, an unexpected status). Retried; returned when retries run out.
	ErrBadResponse = errors.New("bad response")
	// ErrUnavailable: the registry kept failing for a reason expected to
	// pass (5xx, 429, reset connection, request timeout) until the retries
	// or the retry budget ran out.
	ErrUnavailable = errors.New("registry unavailable")
	// ErrUnsupported: a manifest this package cannot read (schema 1,
	// unknown kind).
	ErrUnsupported = errors.New("unsupported manifest")
	// ErrNotPulled: PullNever, and this node has no record of the tag.
	ErrNotPulled = errors.New("tag not resolved on this node before")
)

// Error is a failed blob read: which blob, which bytes, what class of
// failure and its cause. errors.Is matches both Kind and Cause.
type Error struct {
	Digest string // the blob's digest
	Off    int64  // first byte of the range asked for
	Len    int64  // its length
	Kind   error  // one of the sentinels above, or a context error
	Cause  error  // what happened last, nil when Kind says it all
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("remote: blob %s bytes %d-%d: %v", e.Digest, e.Off, e.Off+e.Len-1, e.Kind)
	if e.Cause != nil && e.Cause != e.Kind {
		msg += ": " + e.Cause.Error()
	}
	return msg
}

func (e *Error) Unwrap() []error {
	if e.Cause == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Cause}
}

// kindError tags a cause with its class inside one request; the retry loop
// reads the class, the reader gets it back in an *Error.
type kindError struct {
	kind       error
	cause      error
	retryAfter time.Duration // from a 429/503's Retry-After, 0 if none
}

func (k *kindError) Error() string { return k.kind.Error() + ": " + k.cause.Error() }
func (k *kindError) Unwrap() error { return k.cause }

func classify(kind, cause error) *kindError { return &kindError{kind: kind, cause: cause} }

// retryable says whether another request may succeed where this one failed.
func retryable(kind error) bool {
	return kind == ErrUnavailable || kind == ErrBadResponse
}

// statusKind maps an HTTP status to a sentinel.
func statusKind(code int) error {
	switch {
	case code == http.StatusNotFound:
		return ErrNotFound
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return ErrUnauthorized
	case code == http.StatusRequestedRangeNotSatisfiable:
		return ErrRange
	case code == http.StatusTooManyRequests || code == http.StatusRequestTimeout || code >= 500:
		return ErrUnavailable
	default:
		return ErrBadResponse
	}
}

// registryError translates go-containerregistry's errors from resolving a
// reference into this package's sentinels, once, at this boundary.
func registryError(ref string, err error) error {
	var terr *transport.Error
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, ErrUnauthorized):
		return fmt.Errorf("remote: %s: %w", ref, err)
	case !errors.As(err, &terr):
		// No HTTP answer at all: the registry could not be reached.
		return fmt.Errorf("remote: %s: %w: %w", ref, ErrUnavailable, err)
	}
	kind := statusKind(terr.StatusCode)
	for _, d := range terr.Errors {
		switch d.Code {
		case transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode, transport.BlobUnknownErrorCode:
			kind = ErrNotFound
		case transport.UnauthorizedErrorCode, transport.DeniedErrorCode:
			kind = ErrUnauthorized
		}
	}
	return fmt.Errorf("remote: %s: %w: %w", ref, kind, err)
}
