// Package cache is strata's on-disk store of verified bytes, keyed by their
// content digest: the chunks a lazy layer fetches from a registry, kept so
// that a second read, a second mount or a second strata process does not
// fetch them again. A Store satisfies lazy.ChunkStore without importing it.
//
// # Layout
//
// Everything lives under the directory given to Open:
//
//	DIR/chunks/ALG/XX/HEX   one entry: exactly the bytes whose ALG digest
//	                        is HEX (lowercase, as in the digest string);
//	                        XX is the first two characters of HEX
//	DIR/tmp/put-PID-RAND    an entry being written by process PID
//
// ALG is sha256, sha384 or sha512. The two-character fan-out keeps any one
// directory near 1/256 of the entries, so lookups stay fast with millions of
// them. An entry has no header and no side file: its name is its checksum,
// and the file can serve as the backing file of a FUSE passthrough open as
// it is.
//
// # Writing: temp file, then rename
//
// Put first checks that the data matches the digest it is given (and
// refuses it otherwise), then writes it to a new temp file in DIR/tmp and
// renames that onto its entry's path. rename(2) is atomic within a file
// system, so an entry's path holds either nothing or complete bytes, never
// a partial file. A crash, a kill or a full disk at any point leaves at
// most a temp file, which no reader ever looks at; Open removes temp files
// older than an hour (DefaultStaleAge). By default nothing is fsynced: after
// a power cut an entry may be empty or torn, verification on read catches
// that, and the bytes are fetched again. WithSync fsyncs the file and its
// directory for callers whose bytes cannot be fetched again.
//
// # Reading: verify every time
//
// Get reads the whole entry and hashes it against its name before
// returning it. Callers (lazy.Layer) trust what Get returns, and the disk,
// other processes and people can all change a file behind strata's back, so
// a stored entry is never trusted for having been verified once. An entry
// that does not match (a flipped bit, a truncated or extended file) is
// removed and reported as a miss, so the caller fetches it again and the
// next Put repairs it. So is anything at an entry's path that cannot be an
// entry: a FIFO, a directory, a file over MaxEntrySize (Put refuses data
// that big, since Get holds an entry in memory whole). Put skips a digest
// whose path already exists without reading it, so a corrupt entry is
// repaired only after a Get has found and removed it.
//
// # Errors
//
// Get and Put never fail: a cache that cannot read or write is a cache that
// misses, and the caller has the registry to fall back on. What went wrong
// goes to the logger set with WithLogger and into Stats.
//
// # Concurrency
//
// A Store has no mutex and holds no lock, in memory or on disk, across any
// I/O: its only in-memory state is its counters, and everything shared
// lives in the file system, where rename makes each change atomic. Any
// number of goroutines and processes may use the same DIR at once:
//
//   - temp files are created with O_EXCL under random names, so two
//     writers never share one;
//   - two writers of the same digest both rename complete, identical bytes
//     onto the same path; whichever lands last wins and readers see one or
//     the other, never a mix;
//   - a reader opens the path once and reads that inode, so a concurrent
//     rename or removal does not change what it reads;
//   - a reader that finds corruption removes the entry only if its path
//     still names the file it read, so it does not delete a good entry a
//     writer has just put in its place (a small window remains, and costs
//     at most one re-fetch).
//
// Open reads no entry and lists only DIR/tmp, so it takes the same time on
// an empty cache as on one with a million entries.
//
// # Not yet (the shared cache issue)
//
// The store grows without bound: a size cap (--cache-size) with
// approximately least-recently-used eviction, running while mounts read
// (an entry open for reading stays readable after it is evicted, by unlink
// semantics), is to come, together with whole-file entries assembled from
// chunks for passthrough opens, a bounded memory tier for hot small chunks,
// and `strata cache ls|du|gc`.
package cache
