// Package cache will be strata's shared on-disk store of verified chunks
// and whole files, keyed by content digest, written to a temporary file and
// renamed into place only once verified, bounded by a size cap with
// least-recently-used eviction.
//
// Not implemented yet: it is planned for the lazy registry mount. It will
// depend on the standard library only.
package cache
