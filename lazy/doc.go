// Package lazy will read image layers lazily from a registry: parse a
// layer's table of contents (eStargz, zstd:chunked), map file offsets to
// chunks, fetch chunks with HTTP Range requests through lazy/remote, verify
// each against its digest, and offer the result as a layer.Layer that
// package unionfs merges like any other.
//
// Not implemented yet: today strata mounts local layer directories only
// (layer.Local). The package exists so that the layout and the import
// direction (lazy depends on layer and cache, never on unionfs) are fixed
// from the start.
package lazy
