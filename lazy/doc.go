// Package lazy reads an image layer lazily: from its table of contents (TOC)
// it knows the whole tree at once, and it fetches a file's bytes from the
// blob, chunk by chunk, only when they are read. A *Layer is a layer.Layer,
// so package unionfs merges it like a local directory.
//
// # Formats
//
// Two formats carry a TOC, and both stay ordinary compressed tars for tools
// that ignore it. The estargz library (github.com/containerd/stargz-snapshotter/estargz)
// is used for their layouts; the layout, from the blob's end:
//
//	eStargz                                 zstd:chunked
//	-------                                 ------------
//	footer: 51-byte empty gzip member whose footer: 40 bytes in a skippable frame:
//	  extra field is "%016xSTARGZ", the       TOC offset, compressed and raw
//	  TOC's offset (47 bytes, legacy)         size (LE64 each), type, magic
//	TOC: gzip member holding a tar holding  TOC: zstd frame of the JSON, in a
//	  stargz.index.json                       skippable frame
//	data: each chunk of each file starts a  data: each chunk starts a zstd
//	  gzip member                             frame
//
// The TOC is JSON: one entry per tar entry ("dir", "reg", "symlink",
// "hardlink", "char", "block", "fifo") plus one "chunk" entry for each chunk
// after a file's first. A data entry gives the chunk's compressed offset in
// the blob, its offset and size in the file, an optional inner offset into
// the decompressed stream, and the chunk's digest.
//
// # Trust
//
// The digest in the image manifest is the root of trust. Open reads the
// footer, reads the TOC once, and compares it with that digest (of the TOC
// JSON for eStargz, of either the JSON or the compressed TOC for
// zstd:chunked) before parsing a single entry; a TOC that does not match is
// refused (ErrTOCDigest). A TOC that matches is still checked as untrusted
// input, since whoever wrote the manifest wrote it too: names must be clean
// relative paths (never "..", absolute or repaired), unique, inside
// directories; chunks must tile each file exactly, lie in the blob's data,
// stay under a size limit and carry digests; the entry count is bounded and
// counted while decoding. Anything else is ErrInvalidTOC. Every chunk is
// decompressed and checked against its digest before any of its bytes are
// returned or stored; a mismatch is ErrChunkDigest, never wrong bytes.
//
// estargz.Open is not used: it decodes the whole TOC JSON before a digest or
// size can be checked (its gzip decoders always run first), and it cleans
// names with path.Clean, turning "../x" into "x" instead of refusing it. The
// library's footer parsers and TOC decompressors are used as they are.
//
// # The tree
//
// The TOC is turned into an index once, at Open, and never changes. Entries
// take their attributes from the TOC (atime and ctime equal mtime, as tar
// extraction leaves them). Directories implied by deeper entries but absent
// from the TOC get mode 0755, owner root and time 0. Whiteouts (".wh.NAME")
// and opaque markers (".wh..wh..opq", or an overlayfs opaque xattr) are read
// with layer.Classify and shown as layer.TypeWhiteout entries and
// layer.Dir.Opaque. The eStargz prefetch landmarks (".prefetch.landmark",
// ".no.prefetch.landmark" in the root) belong to the format, not the image,
// and are hidden as stargz-snapshotter hides them. A "hardlink" entry shares
// its target's ID, data and attributes; Nlink counts a file's visible names,
// and Links lists them.
//
// # Reading
//
// Content.ReadAt maps a file offset to its chunks by binary search. Each
// chunk is fetched (usually with one Blob.ReadAt of its compressed range,
// which ends where the next chunk starts), decompressed, verified, and kept
// in a ChunkStore keyed by digest (by default a small in-memory LRU, so that
// sequential small reads fetch each chunk once). Concurrent reads of one
// chunk share one fetch (the first reader's context governs it).
// io.ReaderAt has no context, so ReadAt uses context.Background();
// ReadAtContext takes the caller's.
//
// # Concurrency
//
// A Layer is immutable once opened and safe for concurrent use, as is a
// Content. The store and the fetch de-duplication have their own locks.
package lazy
