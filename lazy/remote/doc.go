// Package remote is strata's access to a registry: it resolves an image
// reference to a manifest, and reads byte ranges of the image's blobs with
// HTTP Range requests. It knows nothing of tar, TOCs or FUSE; package lazy
// builds on it.
//
// # Resolving a reference
//
// [Resolve] parses a reference ("registry/repo:tag" or "registry/repo@sha256:…")
// with go-containerregistry and fetches its manifest:
//
//	reference ──GET manifest──▶ index? ──yes──▶ child for the platform ──▶ (again, at most 4 deep)
//	                              │no
//	                              ▼
//	                        image manifest ──▶ layers (base first), config (fetched, digest checked)
//
// An index resolves to its first child whose platform satisfies the wanted
// one: the host's os/arch, or [WithPlatform]'s. A registry may serve a
// manifest without a mediaType field, or under a generic Content-Type: the
// body then tells an index (it has "manifests") from an image (it has
// "config"). The resulting [Image] is pinned to the manifest's digest.
//
// With [WithStore], manifests and configs are kept by digest, and a
// reference by digest (an index's included) resolves from the store with
// no request. A tag asks the registry, since it may have moved, unless
// [WithRefs] says otherwise: with [PullMissing] (docker run's and nerdctl
// run's default) a tag this node has resolved before resolves as the
// digest recorded then, with no request, and a recorded digest the
// registry no longer has is asked for by its tag again; [PullAlways] asks
// every time and records the answer; [PullNever] refuses a tag not
// recorded ([ErrNotPulled]).
//
// Credentials come from the keychain (the docker config and its credential
// helpers by default), and go-containerregistry's transport does the token
// exchange, once per Image, for pull access to the repository, on the
// first blob read rather than in Resolve (an image resolved from the store
// makes no request until it needs bytes); a token the registry later
// rejects is refreshed by that transport. Plain HTTP is used
// for loopback registries (localhost, 127.0.0.1, [::1]) and, with
// [WithInsecure], for any registry, which also skips TLS verification.
//
// # Reading a range
//
// [Image.Layer] and [Image.Blob] give a [Blob], whose ReadAt(ctx, p, off)
// sends, for the bytes [off, off+len(p)) clipped to the blob's size:
//
//	GET /v2/<repo>/blobs/<digest>
//	Range: bytes=<off>-<off+len-1>          (always closed: some registries refuse "bytes=a-")
//
// and accepts only an answer that carries exactly those bytes:
//
//	206 with Content-Range "bytes off-end/size" (size or "*") and a body of
//	    exactly len bytes: served;
//	200 with the whole blob (a server that ignores Range): the bytes before
//	    off are read and dropped, then len bytes are served. Correct, slow for
//	    late offsets, counted in Stats.BytesFetched;
//	anything else, or a body that ends early: an error, never short data.
//
// Redirects (a registry handing blobs to object storage with a presigned
// URL) are followed; the target is remembered per blob so later ranges go
// straight to it. When a remembered target answers 400/401/403/404/410 (the
// ways object stores say a signature expired), the read forgets it and asks
// the registry again, at once and once per read; any other failure of a
// remembered target also forgets it before the next retry.
//
// # Retries, time limits and concurrency
//
// A request that fails for a reason that may pass is retried: 5xx, 429,
// 408, a connection reset or refused, a request timeout, a body shorter than
// its range, a Content-Range or length other than asked. Waits double from
// a minimum to a maximum ([WithBackoff]), each cut by a random part of up to
// half so that readers that failed together do not come back together, and
// are at least the server's Retry-After (capped at 30 s). 401, 403, 404 and
// 416 are final; any other unexpected answer (another status, a
// Content-Encoding) is retried as a bad response. Every request has a deadline covering its whole body
// ([WithRequestTimeout]); every read has a retry budget ([WithRetryBudget])
// covering all its requests and waits, and a retry limit ([WithRetries]).
// So a read always ends: with the bytes or with an error.
//
// The blobs of one Image share one HTTP client, and every image of the
// same registry in the process shares a semaphore of [WithMaxInFlight]
// tokens, held by a request from sending to the end of its body: that
// bounds the load a node puts on a registry however many images it mounts. Two reads
// of the same (offset, length) of one Blob at the same time share one fetch
// (singleflight); ranges that merely overlap are fetched apart, so a caller
// that wants sharing should align its ranges (package lazy reads whole
// chunks). A shared fetch runs detached from its callers' contexts, bounded
// by the retry budget: a caller whose ctx ends gets its ctx's error at once,
// and the others still get their bytes.
//
// [Blob.ReadAtProgress] reads a range into the caller's buffer as the body
// arrives, reporting how many bytes are in after each piece, so that a
// large range (package lazy's fetch windows of up to 8 MiB) can be used
// from its start while its end is on the way. A retry then asks only for
// the bytes that have not arrived, and the bytes reported are never written
// again. It shares no fetch and runs on the caller's ctx.
//
// # Errors
//
// Every error wraps one sentinel ([ErrNotFound], [ErrUnauthorized],
// [ErrRange], [ErrBadResponse], [ErrUnavailable], [ErrNoPlatform],
// [ErrInvalidReference], [ErrUnsupported]) or a context error, for
// errors.Is. A failed read is an [*Error] naming the blob's digest, the
// range, the class and the last cause, e.g.
//
//	remote: blob sha256:4f…e1 bytes 0-65535: registry unavailable: retry budget 2m0s spent: GET http://…: 503 Service Unavailable: ""
//
// This package returns errors and does not log them; retries and
// re-resolved redirects are logged at Debug level ([WithLogger]). A reader
// that serves files turns an error into EIO and logs it there, once.
//
// # Lifecycle
//
// An Image and its Blobs are safe for concurrent use and hold no goroutines
// between reads; ctx is an argument of every call that may touch the network
// and is never kept. [Image.CloseIdleConnections] releases kept connections.
// Each Blob keeps [Stats] (reads, requests, retries, bytes, last error) for
// strata stat.
package remote
