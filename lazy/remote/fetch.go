package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"
)

// errStale marks a remembered redirect target that refused the request
// (an expired presigned URL): ask the registry again, at once.
var errStale = errors.New("redirect target refused the request")

// fetch reads [off, off+n) with retries, within the retry budget.
func (b *Blob) fetch(ctx context.Context, off, n int64) ([]byte, error) {
	o := b.c.opts
	ctx, cancel := context.WithTimeout(ctx, o.retryBudget)
	defer cancel()
	buf := make([]byte, n)
	reresolved := false
	for attempt := 0; ; {
		ke := b.attempt(ctx, buf, off, &reresolved)
		if ke == nil {
			return buf, nil
		}
		b.stats.failed(ke)
		if ke.kind == errStale {
			b.stats.retry()
			o.logger.Debug("redirect target refused, asking the registry again",
				"digest", b.digest, "off", off, "len", n, "err", ke)
			continue
		}
		if !retryable(ke.kind) || attempt >= o.retries {
			return nil, b.failure(off, n, ke, "")
		}
		if !b.backoff(ctx, attempt, ke.retryAfter) {
			return nil, b.failure(off, n, ke, fmt.Sprintf("retry budget %v spent", o.retryBudget))
		}
		attempt++
		b.stats.retry()
		o.logger.Debug("retrying blob range", "digest", b.digest, "off", off, "len", n,
			"attempt", attempt, "err", ke)
	}
}

func (b *Blob) failure(off, n int64, ke *kindError, why string) error {
	cause := ke.cause
	if why != "" {
		cause = fmt.Errorf("%s: %w", why, cause)
	}
	return &Error{Digest: b.digest, Off: off, Len: n, Kind: ke.kind, Cause: cause}
}

// backoff waits before retry number attempt+1: exponential, jittered down
// by up to half so that readers failed together do not retry together, and
// at least what the server asked for with Retry-After. It returns false
// without waiting when the budget would end first.
func (b *Blob) backoff(ctx context.Context, attempt int, retryAfter time.Duration) bool {
	o := b.c.opts
	wait := o.minBackoff
	for i := 0; i < attempt && wait < o.maxBackoff; i++ {
		wait *= 2
	}
	wait = min(wait, o.maxBackoff)
	wait -= time.Duration(rand.Int64N(int64(wait)/2 + 1))
	wait = max(wait, min(retryAfter, maxRetryAfter))
	if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < wait {
		return false
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// attempt sends one range request and fills buf from its body.
func (b *Blob) attempt(ctx context.Context, buf []byte, off int64, reresolved *bool) *kindError {
	if err := b.acquire(ctx); err != nil {
		return classify(ErrUnavailable, err)
	}
	defer func() { <-b.c.sem }()
	ctx, cancel := context.WithTimeout(ctx, b.c.opts.requestTimeout)
	defer cancel()

	url, remembered := b.url()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return classify(ErrBadResponse, err)
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+int64(len(buf))-1))
	// Asking for identity keeps Go from decompressing behind our back and
	// dropping the Content-Length we check.
	req.Header.Set("Accept-Encoding", "identity")
	hc, err := b.c.httpClient(ctx)
	if err != nil {
		// Refused credentials are final; a registry not answering may pass.
		kind := ErrUnavailable
		for _, k := range []error{ErrUnauthorized, ErrNotFound} {
			if errors.Is(err, k) {
				kind = k
			}
		}
		return classify(kind, err)
	}
	b.stats.request()
	resp, err := hc.Do(req)
	if err != nil {
		b.forget(url)
		return classify(ErrUnavailable, err)
	}
	defer resp.Body.Close()
	ke := b.body(resp, buf, off)
	switch {
	case ke == nil && resp.Request != req:
		b.remember(resp.Request.URL.String())
	case ke != nil && remembered:
		b.forget(url)
		if staleStatus(resp.StatusCode) && !*reresolved {
			*reresolved = true
			return &kindError{kind: errStale, cause: ke}
		}
	}
	return ke
}

func (b *Blob) acquire(ctx context.Context) error {
	select {
	case b.c.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// staleStatus is how object stores answer an expired presigned URL.
func staleStatus(code int) bool {
	switch code {
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden,
		http.StatusNotFound, http.StatusGone:
		return true
	}
	return false
}

// body checks that resp answers the range request and reads it into buf. A
// 206 must carry exactly the range asked for. A 200 (a server that ignores
// Range) carries the whole blob: the bytes before off are read and dropped,
// which is slow for late offsets but correct.
func (b *Blob) body(resp *http.Response, buf []byte, off int64) *kindError {
	n := int64(len(buf))
	switch resp.StatusCode {
	case http.StatusPartialContent:
		if err := checkContentRange(resp.Header.Get("Content-Range"), off, n, b.size); err != nil {
			return classify(ErrBadResponse, err)
		}
		if resp.ContentLength >= 0 && resp.ContentLength != n {
			return classify(ErrBadResponse, fmt.Errorf("Content-Length %d for a %d-byte range", resp.ContentLength, n))
		}
	case http.StatusOK:
		if resp.ContentLength >= 0 && resp.ContentLength != b.size {
			return classify(ErrBadResponse, fmt.Errorf("200 with Content-Length %d for a %d-byte blob", resp.ContentLength, b.size))
		}
	default:
		return statusError(resp)
	}
	if ce := resp.Header.Get("Content-Encoding"); ce != "" && ce != "identity" {
		return classify(ErrBadResponse, fmt.Errorf("Content-Encoding %q, asked for identity", ce))
	}
	cr := &countingReader{r: resp.Body}
	defer func() { b.stats.fetched(cr.n) }()
	want := n
	if resp.StatusCode == http.StatusOK {
		want += off
		if _, err := io.CopyN(io.Discard, cr, off); err != nil {
			return readError(err, cr.n, want)
		}
	}
	if _, err := io.ReadFull(cr, buf); err != nil {
		return readError(err, cr.n, want)
	}
	return nil
}

// readError tells a body that ended early (the server or a proxy cut it)
// from a transport failure (reset, timeout); both are worth a retry.
func readError(err error, got, want int64) *kindError {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return classify(ErrBadResponse, fmt.Errorf("short body: %d of %d bytes", got, want))
	}
	return classify(ErrUnavailable, fmt.Errorf("reading body after %d bytes: %w", got, err))
}

// checkContentRange accepts only "bytes off-end/size" (or "/*") for
// exactly the range asked for.
func checkContentRange(h string, off, n, size int64) error {
	var first, last int64
	var total string
	if _, err := fmt.Sscanf(h, "bytes %d-%d/%s", &first, &last, &total); err != nil {
		return fmt.Errorf("Content-Range %q: %v", h, err)
	}
	if first != off || last != off+n-1 || (total != "*" && total != strconv.FormatInt(size, 10)) {
		return fmt.Errorf("Content-Range %q for bytes %d-%d/%d", h, off, off+n-1, size)
	}
	return nil
}

// statusError classifies an error status, keeping the start of the body
// (registries explain themselves there) and any Retry-After.
func statusError(resp *http.Response) *kindError {
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	ke := classify(statusKind(resp.StatusCode), fmt.Errorf("GET %s: %s: %q", redact(resp.Request), resp.Status, msg))
	ke.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"))
	return ke
}

// redact drops the query, where presigned URLs keep their signature.
func redact(req *http.Request) string {
	u := *req.URL
	if u.RawQuery != "" {
		u.RawQuery = "REDACTED"
	}
	return u.String()
}

// parseRetryAfter reads seconds or an HTTP date; 0 if absent or unreadable.
func parseRetryAfter(h string) time.Duration {
	if h == "" {
		return 0
	}
	if s, err := strconv.Atoi(h); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil {
		return max(0, time.Until(t))
	}
	return 0
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
