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
	buf := make([]byte, n)
	if err := b.fill(ctx, buf, off, nil); err != nil {
		return nil, err
	}
	return buf, nil
}

// fill reads buf at off with retries, within the retry budget, calling
// progress (if not nil) with how many of buf's bytes have arrived each time
// more do. A retry asks only for the bytes that have not arrived: those that
// have are kept, never written again.
func (b *Blob) fill(ctx context.Context, buf []byte, off int64, progress func(int64)) error {
	o := b.c.opts
	ctx, cancel := context.WithTimeout(ctx, o.retryBudget)
	defer cancel()
	n := int64(len(buf))
	var got int64
	reresolved := false
	for attempt := 0; ; {
		k, ke := b.attempt(ctx, buf[got:], off+got, &reresolved, func(k int64) {
			if progress != nil {
				progress(got + k)
			}
		})
		got += k
		if ke == nil {
			return nil
		}
		b.stats.failed(ke)
		if ke.kind == errStale {
			b.stats.retry()
			o.logger.Debug("redirect target refused, asking the registry again",
				"digest", b.digest, "off", off, "len", n, "err", ke)
			continue
		}
		if !retryable(ke.kind) || attempt >= o.retries {
			return b.failure(off, n, ke, "")
		}
		if !b.backoff(ctx, attempt, ke.retryAfter) {
			return b.failure(off, n, ke, fmt.Sprintf("retry budget %v spent", o.retryBudget))
		}
		attempt++
		b.stats.retry()
		o.logger.Debug("retrying blob range", "digest", b.digest, "off", off, "len", n,
			"arrived", got, "attempt", attempt, "err", ke)
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

// attempt sends one range request and fills buf from its body, calling
// progress with how many of buf's bytes have arrived, as they do. It returns
// that count, also on failure.
func (b *Blob) attempt(ctx context.Context, buf []byte, off int64, reresolved *bool, progress func(int64)) (int64, *kindError) {
	if err := b.acquire(ctx); err != nil {
		return 0, classify(ErrUnavailable, err)
	}
	defer func() { <-b.c.sem }()
	ctx, cancel := context.WithTimeout(ctx, b.c.opts.requestTimeout)
	defer cancel()

	url, remembered := b.url()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, classify(ErrBadResponse, err)
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
		return 0, classify(kind, err)
	}
	b.stats.request()
	resp, err := hc.Do(req)
	if err != nil {
		b.forget(url)
		return 0, classify(ErrUnavailable, err)
	}
	defer resp.Body.Close()
	got, ke := b.body(resp, buf, off, progress)
	switch {
	case ke == nil && resp.Request != req:
		b.remember(resp.Request.URL.String())
	case ke != nil && remembered:
		b.forget(url)
		if staleStatus(resp.StatusCode) && !*reresolved {
			*reresolved = true
			return got, &kindError{kind: errStale, cause: ke}
		}
	}
	return got, ke
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
// which is slow for late offsets but correct. It returns how many of buf's
// bytes arrived, also on failure, and reports them to progress as they do.
func (b *Blob) body(resp *http.Response, buf []byte, off int64, progress func(int64)) (int64, *kindError) {
	n := int64(len(buf))
	switch resp.StatusCode {
	case http.StatusPartialContent:
		if err := checkContentRange(resp.Header.Get("Content-Range"), off, n, b.size); err != nil {
			return 0, classify(ErrBadResponse, err)
		}
		if resp.ContentLength >= 0 && resp.ContentLength != n {
			return 0, classify(ErrBadResponse, fmt.Errorf("Content-Length %d for a %d-byte range", resp.ContentLength, n))
		}
	case http.StatusOK:
		if resp.ContentLength >= 0 && resp.ContentLength != b.size {
			return 0, classify(ErrBadResponse, fmt.Errorf("200 with Content-Length %d for a %d-byte blob", resp.ContentLength, b.size))
		}
	default:
		return 0, statusError(resp)
	}
	if ce := resp.Header.Get("Content-Encoding"); ce != "" && ce != "identity" {
		return 0, classify(ErrBadResponse, fmt.Errorf("Content-Encoding %q, asked for identity", ce))
	}
	cr := &countingReader{r: resp.Body}
	defer func() { b.stats.fetched(cr.n) }()
	want := n
	if resp.StatusCode == http.StatusOK {
		want += off
		if _, err := io.CopyN(io.Discard, cr, off); err != nil {
			return 0, readError(err, cr.n, want)
		}
	}
	got, err := readFull(cr, buf, progress)
	if err != nil {
		return got, readError(err, cr.n, want)
	}
	return got, nil
}

// readFull is io.ReadFull that reports, after each read, how many of buf's
// bytes have arrived.
func readFull(r io.Reader, buf []byte, progress func(int64)) (int64, error) {
	var got int64
	for got < int64(len(buf)) {
		k, err := r.Read(buf[got:])
		got += int64(k)
		if k > 0 {
			progress(got)
		}
		switch {
		case got == int64(len(buf)):
			return got, nil
		case err == io.EOF:
			return got, io.ErrUnexpectedEOF
		case err != nil:
			return got, err
		}
	}
	return got, nil
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
