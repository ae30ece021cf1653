// Package status is how a running mount tells `strata stat` what it is
// doing: one small JSON file per mount in a runtime directory (/run/strata,
// or $STRATA_RUNTIME_DIR), named after a hash of the mountpoint's absolute
// path. The mount rewrites it about once a second, atomically (temporary
// file, then rename), and removes it when it unmounts. The file lives outside
// the mount, so nothing of it appears in the container's tree.
//
// A status file whose process is gone is stale (the mount was killed); Read
// reports it as such rather than as a live mount, and the next mount to
// start removes it (Sweep).
//
// Start runs the loop a mounting process keeps its file current with, and
// returns the function that stops it and removes the file;
// LayerOf and CacheOf turn a registry layer's counters (its blob's requests,
// its lazy layer's reads) and the on-disk cache's into a status, for strata
// mount and strata-snapshotter alike.
package status
