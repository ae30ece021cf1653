// Package registry runs a real OCI registry for the benchmarks: Debian's
// docker-registry (the CNCF distribution registry, 2.8), the same server
// code that Docker Hub and most private registries run, so blob GETs,
// Range requests (single and multi-range), errors and content types are
// what strata meets in the field, not an in-process imitation.
//
// # Lifecycle
//
//	Start ──▶ temp dir: config.yml, registry.log, storage/ (unless Options.StorageDir)
//	  │       docker-registry serve config.yml, own process group,
//	  │       listening on 127.0.0.1:<free port>; returns once GET /v2/ is 200
//	  ▼
//	Push(layout, ref) … any HTTP client on Registry.URL …
//	  ▼
//	Stop ──▶ SIGTERM to the group, SIGKILL after 5 s, wait for the process,
//	         remove the temp dir (and a given StorageDir if RemoveStorage)
//
// Stop is idempotent and is the only thing that ends the process, so a
// test registers it with t.Cleanup right after Start; the process also
// gets SIGKILL if the Go process dies first (Pdeathsig). The registry
// binds 127.0.0.1 only, has no auth and allows deletes; its log level is
// warn, so its log (in the temp dir, quoted in Start's errors) stays
// short.
//
// # Pushing
//
// Push reads an image from an OCI layout (lazy/convert's "oci:PATH:TAG"
// form, as package bench/images writes them) and writes it with
// go-containerregistry's remote.Write over plain HTTP. Layer blobs keep
// their bytes and digests, so a lazy format's TOC annotations stay valid.
//
// If docker-registry is missing, Start installs it with apt-get.
package registry
