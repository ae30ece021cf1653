// Package stream mounts a layer that has no table of contents (a plain
// tar, gzip or zstd layer) by reading its blob once, front to back, in the
// background, and serving each file as soon as the stream has passed it. A
// *Layer is a layer.Layer, so package unionfs merges it like any other.
//
// # The stream
//
// Open starts one goroutine and returns. The goroutine reads the blob with
// large sequential Blob.ReadAt calls (WithChunkSize, 4 MiB by default),
// decompresses it (klauspost gzip or zstd, or nothing for a plain tar) and
// parses the tar with archive/tar. Every regular file's bytes are appended
// to one spool file per layer (WithSpoolDir, os.TempDir() by default),
// which is unlinked as soon as it is created: it lives as long as its
// descriptor, so Close, or a crash, leaves nothing on disk. The spool needs
// room for the whole uncompressed layer; nothing bounds it.
//
// # The tree
//
// The index grows as the stream goes, exactly as extracting the tar would
// build a directory: directories implied by deeper entries get mode 0755,
// owner root and time 0 until the tar names them (then the entry's
// attributes replace the defaults); a path named twice takes the later
// entry (a directory over a directory keeps its children); a hard link
// resolves to the entry of the same tar it names, which must come earlier,
// and shares its ID and bytes. Whiteouts (".wh.NAME", a 0/0 char device)
// and opaque markers (".wh..wh..opq", an overlayfs opaque xattr) are kept
// as raw entries and read with layer.Classify when a directory is answered.
// Names are refused, not repaired, unless they are clean relative paths
// after removing a leading "./": an absolute name, "..", or a name inside a
// non-directory fails the layer.
//
// A file becomes visible only once all its bytes are in the spool.
//
// # Waiting
//
// A question about a path the stream has not reached waits for it: Open
// returns once the file is indexed, Root once the first entry is (usually
// the root's own "./"), Links at the end of the stream. A path still
// missing at the end is layer.ErrNotExist. Waiters sleep on a channel that
// the stream closes after every entry; their ctx ends the wait (and only
// the wait).
//
// Answers given before the end of the stream describe the tar so far: a
// later duplicate can still replace an entry, a later directory entry
// can replace an implied directory's attributes, and a later hard link
// raises a file's Nlink.
//
// # Directory listings
//
// A tar may add to any directory at any point, so a listing is complete
// only at the end of the stream, and by default ReadDir waits for it. The
// kernel caches listings for long, so a partial one would stay wrong.
// Layer tars written by docker, buildkit and umoci list each directory's
// subtree in one run; WithWalkOrder trusts that, and answers a directory
// (and a negative Open inside it) as soon as the stream reaches an entry
// outside it. The root is never left, so its listing still waits for the
// end. A tar that breaks the promise after such an answer fails the layer
// with ErrOrder (and ErrStream): the early answer cannot be taken back, but
// nothing more is served from a layer that contradicts it.
//
// # Trust
//
// With a diffID, the uncompressed stream is hashed as it goes; with
// WithBlobDigest, the compressed blob is too. Both are checked only at the
// end of the stream, so bytes served before the end could not be verified
// yet: they are what the stream carried, and a layer whose digest then
// fails to match may already have served wrong bytes. The same holds,
// without digests, for the formats' own checks: gzip's CRC is read at the
// end of each member, so a corrupt deflate block may decode to bytes that
// are served before the CRC fails. Once a digest fails to match, every
// Open, ReadDir, Root and read fails with ErrDigest. A failure of the
// stream itself (the blob, the decompressor, the tar) fails the layer with
// ErrStream in the same way and wakes every waiter with it.
//
// # Lifecycle and concurrency
//
// Close cancels the stream's context, waits for the goroutine, and closes
// the spool; later calls fail with ErrClosed. Progress reports compressed
// bytes read against the blob's size. A Layer and its Contents are safe for
// concurrent use: one mutex (Layer.mu) guards the index and the state, the
// spool is written by the stream goroutine only and read with pread.
package stream
