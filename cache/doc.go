// Package cache is strata's on-disk store of verified bytes, keyed by their
// content digest: the chunks a lazy layer fetches from a registry, and whole
// lower files kept so that FUSE passthrough can serve them, so that a second
// read, a second mount or a second strata process does not fetch them
// again. A Store satisfies lazy.ChunkStore without importing it. Its size
// can be capped; it then evicts the least recently used entries while
// mounts read.
//
// # Layout
//
// Everything lives under the directory given to Open:
//
//	DIR/chunks/ALG/XX/HEX   a chunk entry: exactly the bytes whose ALG
//	                        digest is HEX (lowercase, as in the digest
//	                        string); XX is the first two characters of HEX
//	DIR/files/ALG/XX/HEX    a file entry: exactly a whole file's bytes,
//	                        keyed by the file's digest (the digest of a reg
//	                        entry in an eStargz or zstd:chunked TOC)
//	DIR/refs/XX/HEX         a ref: what an image reference (registry/repo:tag)
//	                        pointed to when this node last resolved it, as
//	                        "REFERENCE\nDIGEST\n"; HEX is the SHA-256 of
//	                        the reference
//	DIR/tmp/put-PID-RAND    an entry being written by process PID
//	DIR/usage               the usage record: estimated bytes and entries
//	DIR/evict.lock          held (flock) by whoever is sweeping
//
// ALG is sha256, sha384 or sha512. The two-character fan-out keeps any one
// directory near 1/256 of the entries, so lookups stay fast with millions of
// them. An entry has no header and no side file: its name is its checksum,
// and the file can serve as the backing file of a FUSE passthrough open as
// it is. Chunks and files live apart because one blob can be both (a file
// stored in a single chunk) and each kind is read its own way.
//
// # Writing: a file no one sees until it is complete
//
// Put first checks that the data matches the digest it is given (and refuses
// it otherwise; PutVerified skips that hash for a caller that has just made
// it, as package lazy has). It then writes the data to an unnamed file
// (O_TMPFILE) in the entry's own fan-out directory and links it in under
// the entry's name. linkat never replaces a name: an entry already there
// is kept, and of two writers racing on one digest exactly one stores it.
// No name leads to the file before it is complete, so an entry's path
// holds either nothing or complete bytes, never a partial file.
//
// On a file system without O_TMPFILE, Put writes a named temp file in
// DIR/tmp instead and renames it in with renameat2(RENAME_NOREPLACE), with
// the same guarantees. PutFile always does that: it streams a file of any
// size through a hash into a temp file and renames it in only if the size
// and digest are the ones announced (else ErrMismatch); it never holds the
// file in memory. The unnamed file costs 5 system calls where the temp
// file costs 13, and no contended lock on DIR/tmp or on the file system's
// cross-directory rename (tmpfile.go has the measurement).
//
// A writer holds an exclusive flock on its temp file until it is renamed
// or removed. A crash, a kill or a full disk at any point leaves at most a
// temp file (an unnamed file, the kernel frees), which no reader ever looks
// at and whose lock the kernel drops with the process; Open and GC remove
// temp files older than an hour (DefaultStaleAge) whose lock they can
// take, and never one a live writer holds, however slow it is. By default
// nothing is fsynced: after a power cut an entry may be empty or torn,
// verification on read catches that, and the bytes are fetched again.
// WithSync fsyncs the file and its directory for callers whose bytes
// cannot be fetched again.
//
// # Reading chunks: verify every time
//
// Get reads the whole chunk and hashes it against its name before
// returning it. Callers (lazy.Layer) trust what Get returns, and the disk,
// other processes and people can all change a file behind strata's back, so
// a stored chunk is never trusted for having been verified once. An entry
// that does not match (a flipped bit, a truncated or extended file) is
// removed and reported as a miss, so the caller fetches it again and the
// next Put repairs it. So is anything at an entry's path that cannot be an
// entry: a FIFO, a directory, a chunk over MaxEntrySize (Put refuses data
// that big, since Get holds a chunk in memory whole). Put skips a digest
// whose path already exists without reading it, so a corrupt entry is
// repaired only after a Get has found and removed it.
//
// # Reading files: verify once per identity
//
// OpenFile returns an *os.File on a file entry, for a passthrough open.
// Files run to GiBs, so hashing one on every open would make warm opens as
// slow as cold ones. Instead a Store hashes a file entry whole the first
// time it opens it and remembers the identity it verified: device, inode,
// size and mtime. A later open whose fstat shows the same identity is
// trusted without reading; one that differs (the file was replaced,
// truncated, extended or written, which moves the mtime) is hashed again.
// A file that fails is removed, as Get does, and OpenFile misses. PutFile
// remembers the identity of what it has just hashed and written, so its
// Store's first open costs nothing. The memo is per Store and in memory,
// unless WithVerifiedDir shares it: through a directory of records (one
// per file, its identity), which strata keeps in its runtime directory,
// /run/strata (root's, gone at reboot), not in the cache, whose files
// anyone who can change entries could change too. A new process then
// trusts what an earlier one verified, as a long-lived one trusts its own
// memo, instead of hashing each file it opens once more. What the memo
// cannot see is damage that keeps the identity, such as a bit flipped by
// the disk or a write followed by a deliberate reset of the mtime; GC with
// Verify finds those.
// Concurrent first opens of one file share a single hash. HasFile tells
// whether a file entry exists without opening it.
//
// # Refs: names, not entries
//
// A ref (SetRef, Ref) is the one thing here not named by its content: it
// records which digest a tag named when this node last asked the registry,
// so that a second mount of an image by tag need not ask again (docker run
// and nerdctl's --pull missing; see package lazy/remote's Pull). A ref is
// written whole (a temp file renamed over the old one) and read back only
// if it names its own reference and holds a valid digest. It is trusted as
// containerd trusts its image store: a ref changed behind strata's back can
// point a tag at another image of the same repository, never at bytes
// that do not match their digest, since the manifest it names is verified
// like every entry. Refs are a few hundred bytes each and are not evicted.
//
// # Recording use
//
// Eviction order is the entries' atime, which a Store sets itself: a Get
// or OpenFile hit whose entry's atime is more than a minute old sets it to
// now with utimensat, leaving the mtime (UTIME_OMIT), so a hot entry costs
// one syscall a minute and order is right to the minute. The kernel's own
// atime updates are not relied on (noatime mounts make none; relatime, at
// most one a day), though they only ever move an entry later. Has,
// HasFile, Walk, Usage and GC's verification (which reads with O_NOATIME)
// do not count as uses. PutFile sets the atime of what it stores to the
// moment it is renamed in, so that a file that took minutes to fetch does
// not enter the cache looking old.
//
// # The usage record
//
// A cap needs to know how full the cache is, and counting a million
// entries takes seconds, so Open never does it. DIR/usage holds the
// cache's estimated bytes and entries (file sizes; the file system adds
// its block rounding) and when a scan last reconciled them, in one line
// whose format usageRecord documents byte by byte. Every process sharing
// the directory keeps it current with a read-modify-write under an
// exclusive flock on the file, held for a read and a write of a few dozen
// bytes and never across any other I/O:
//
//   - a Put or PutFile that stores an entry adds its size and one entry,
//     after the rename (a writer that finds the entry there adds nothing);
//     a Store writes what it added within 100 ms, in one update for all
//     the entries it stored meanwhile (an update costs as much as storing
//     a small chunk), and at once on Stats, Close and before a sweep;
//   - eviction subtracts what it removed;
//   - a scan (by the evictor or GC) reconciles it: it sets the record to
//     what the scan counted, plus what other processes added to the record
//     while the scan ran.
//
// Removing a corrupt entry, or an entry removed by hand, changes nothing:
// the record errs high until the next scan, which is the safe side (it only
// brings the next sweep forward). The error low is bounded: a process killed
// between its renames and its update loses the count of the entries it
// stored in its last 100 ms, and a waiter that cannot get the lock in half a
// second (its holder stopped) gives up and logs. A missing, empty or torn
// record (a CRC guards it) reads as zero and "not reconciled": the
// adjustments still add up from there, and the next scan adds the base. Open
// writes a reconciled zero record when the cache has neither a record nor an
// entry (a new cache); a cache from before the record existed gets one at
// the first sweep. Stats reports the estimate, or -1 while it is not
// reconciled.
//
// # Eviction
//
// WithMaxSize(n) caps the bytes of all entries, both kinds together. The
// Store then runs one goroutine, stopped by Close, which reads the usage
// record when the Store starts, when one of its own Puts leaves the
// record over n (or unreconciled), and every ten seconds to notice other
// processes' Puts. When the record is over n or unreconciled, it takes
// DIR/evict.lock without waiting (if another process holds it, that one's
// sweep serves everybody) and sweeps:
//
//  1. it scans every entry with lstat, counting them and keeping, in a
//     heap, just enough of the least recently used ones to cover the
//     excess: its memory is that of what it will remove, not of the
//     cache;
//  2. it reconciles the record from the scan;
//  3. it removes candidates, oldest atime first, until the record is down
//     to 90% of n, so that one scan makes room for many Puts.
//
// An entry written or used after the scan began (less a 50 ms margin for
// the kernel's coarse file clock) is never a candidate, and a candidate is
// removed only if its path still names the inode the scan saw, with the
// same atime and mtime: an entry used, replaced or re-stored since is
// spared (a hit between that last check and the unlink still loses its
// entry, which costs one fetch). Removal is unlink, so a reader that has
// an entry open (a passthrough file, a Get in progress) keeps reading the
// bytes it opened. Temp files are never candidates. A sweep takes at least
// as long a rest as it took, so that a huge cache under constant pressure
// costs at most half of one core. Entries larger than the cap are refused.
//
// GC runs the same sweep for a maintenance tool (strata cache gc), waiting
// for the lock rather than skipping, after removing stale temp files; it
// may also verify every entry and evict down to a size of its own.
//
// # Errors
//
// Get, Put and OpenFile never fail: a cache that cannot read or write is a
// cache that misses, and the caller has the registry to fall back on. What
// went wrong goes to the logger set with WithLogger and into Stats.
// PutFile returns its errors, since its caller supplies the bytes and may
// want to know they were wrong (ErrMismatch) or too big (ErrTooLarge).
//
// # Concurrency
//
// Any number of goroutines and processes may use the same DIR at once. A
// Store's in-memory state is its counters, the memo of verified files
// (guarded by its mutex, which is never held across I/O) and its
// goroutine; everything shared lives in the file system, where rename and
// unlink make each change atomic, and the only locks are flocks: the
// usage record's, held for a moment; each temp file's, held by its writer
// and only ever tried by others; and DIR/evict.lock, held across a sweep
// but only ever tried by mounts, so no reader or writer ever waits on it.
//
//   - temp files are created with O_EXCL under random names, so two
//     writers never share one;
//   - two writers of the same digest both write complete, identical bytes;
//     the first rename stores them and the second finds the entry there;
//   - a reader opens the path once and reads that inode, so a concurrent
//     rename, eviction or removal does not change what it reads;
//   - a reader that finds corruption removes the entry only if its path
//     still names the file it read, so it does not delete a good entry a
//     writer has just put in its place (a small window remains, and costs
//     at most one re-fetch).
//
// Open lists only DIR/tmp and the top of DIR/chunks and DIR/files, and
// reads the usage record; it never walks the entries, so it takes the same
// time on an empty cache as on one with a million entries. Scans happen
// only in the Store's goroutine, in GC, Walk and Usage.
//
// # Not here
//
// Assembling a file entry from its chunks is the caller's business
// (PutFile takes a writer-filling function); the memory tier for hot
// chunks is lazy.MemoryStore in front of a Store.
package cache
