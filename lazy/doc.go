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
// The footer and the TOC take two reads, the footer first. OpenImage saves
// one: a zstd:chunked layer's manifest-position annotation says where its
// TOC starts, and the first read then runs from there to the blob's end
// (up to 64 MiB). The position is only a hint; the footer still says where
// the TOC is, and a position past it costs the second read.
//
// estargz.Open is not used: it decodes the whole TOC JSON before a digest or
// size can be checked (its gzip decoders always run first), and it cleans
// names with path.Clean, turning "../x" into "x" instead of refusing it. The
// library's footer parsers and TOC decompressors are used as they are.
//
// # The tree
//
// The TOC is turned into an index once, at Open, and never changes. The
// JSON is decoded entry by entry (JSON v2, github.com/go-json-experiment/
// json, with encoding/json's leniency) and each entry added to the tree as
// it comes, never all held at once; for a TOC of 256 KiB or more the
// decoding runs on a goroutine of its own, a few batches ahead of the tree
// (pipeline.go): a layer must be open before anything is mounted. Entries
// take their attributes from the TOC (atime and ctime equal mtime, as tar
// extraction leaves them). Directories implied by deeper entries but absent
// from the TOC get mode 0755, owner root and time 0. Whiteouts (".wh.NAME")
// and opaque markers (".wh..wh..opq", or an overlayfs opaque xattr) are read
// with layer.Classify and shown as layer.TypeWhiteout entries and
// layer.Dir.Opaque. The eStargz prefetch landmarks (".prefetch.landmark",
// ".no.prefetch.landmark" in the root) belong to the format, not the image,
// and are hidden as stargz-snapshotter hides them. A "hardlink" entry shares
// its target's ID, data and attributes; Nlink counts a file's visible names,
// and Links lists them. A hard link to a path the layer does not hold names
// a file of a layer below: it is listed as layer.TypeLowerLink, for the
// union to resolve. Directories implied by deeper names are marked
// Implied, so that the union gives them the attributes of the same
// directory below.
//
// The TOC, once verified, is kept in the ChunkStore under the digest that
// verified it (the TOC JSON for eStargz, the compressed TOC for
// zstd:chunked): a later Open of the same layer, in any process sharing
// the on-disk cache, reads nothing from the blob. The footer is not kept,
// so such a layer fetches its last chunk with the TOC behind it.
//
// # Reading
//
// Content.ReadAt maps a file offset to its chunks by binary search. Each
// chunk is decompressed, verified, and kept in a ChunkStore keyed by digest
// (by default a small in-memory LRU, so that sequential small reads fetch
// each chunk once). io.ReaderAt has no context, so ReadAt uses
// context.Background(); ReadAtContext takes the caller's.
//
// A registry round trip costs about what a few MiB cost at link speed, so a
// chunk is rarely fetched alone. When a read needs a chunk that is neither
// stored nor being fetched, it fetches a window: that chunk and the chunks
// that follow it in the blob (the rest of its file first, since a file's
// chunks are consecutive, then the files after it, which tar order tends to
// make the next ones read), up to WithFetchWindow compressed bytes (default
// 4 MiB), stopping at the first chunk being fetched, or stored or known bad
// and over 64 KiB compressed (a smaller one is fetched along, undecoded:
// identical files share a chunk, and a layer's prefetch would otherwise
// break into windows of a few KiB).
// The window is one read of the blob (one Range request), which runs in the
// background on the layer's context, so that a reader that gives up leaves
// it to the others. Its chunks are decompressed and verified one by one
// from their own byte ranges, as soon as their bytes have arrived (a Blob
// that reports its progress, as lazy/remote's does, tells when; any other,
// once the whole window is in), so a reader of the window's first chunk
// does not wait for its last, and a bad chunk fails alone
// (ErrChunkDigest or a decompression error) and never keeps its neighbours
// from being served; only verified chunks are stored or returned. (A
// zstd:chunked chunk is decoded as whole frames, cut by their block
// headers, into a scratch buffer reused between chunks, not through a
// streaming decoder, whose window ring would hold 8 MiB per decoder; see
// zstdframe.go.) A
// background goroutine follows the bytes and verifies the chunks in blob
// order; a reader waiting for a chunk whose bytes have arrived verifies it
// itself if that goroutine has not reached it, rather than wait for the
// chunks before it; each chunk is verified once, by whoever takes it first.
// A read that fails fails only the chunks whose bytes had not arrived.
// A chunk that arrived but did not verify is marked bad: windows and
// read-ahead leave it alone, and only a read of that chunk fetches it
// again. A chunk whose compressed range exceeds the window is streamed
// alone, in pieces, as a lying TOC may make that range huge.
//
// Read-ahead: when a read of a Content starts where its previous read ended
// (or at 0), the layer looks for the first chunk of the file past the read
// that is neither stored, being fetched nor bad; if it lies within
// WithReadAhead windows of the reader, the read claims the window starting
// there before it returns (so that the reader's next read waits for that
// window instead of fetching the same chunks itself), and a background
// goroutine fetches it. At most WithReadAhead (default 2) read-aheads are
// in flight per layer; a read that finds none free starts none (a later
// read tries again), so a sequential reader keeps about two windows ahead of
// itself and the store is never flooded. Once a reader has read two
// windows' worth in a row, its read-ahead windows are twice the fetch
// window: a long read is served best by fewer, larger requests, and each
// request costs the registry CPU time of its own (9 ms with Debian's
// docker-registry on these machines).
//
// In a store of memory alone, what a window fetches must stay stored until
// it is read, so windows are also bounded by what they hold decompressed
// (an eighth of the store; grown read-ahead windows a quarter), and
// read-ahead runs at most a quarter of the store's worth of the file ahead
// of its reader, chunks already stored included: a reader slower than its
// read-ahead would otherwise have it evict, unread, the chunks it fetched.
//
// # Prefetch
//
// Layer.Prefetch fetches chunks before they are read, in the background, in
// windows of 8 MiB, two in flight per layer: PrefetchLandmark the files an
// eStargz layer puts before its .prefetch.landmark; PrefetchAll the whole
// layer; PrefetchAuto the landmark's files, then the whole layer once
// readers have fetched a quarter of it, or have fetched four windows in a
// row that each began where the one before ended and moved on to another
// file, as a walk of the tree reading every file does (a build or a scan
// reads most of an image; a container start reads a few percent, here and
// there). Landmark and All prefetches yield to reads: no window starts while
// a reader of any layer of the image waits for a fetch, nor until reads have
// been quiet for 150 ms. Auto's whole-layer prefetch, once started, does
// not yield: its readers asked for it. A scan's starts at once; the one a
// quarter of the layer read sets off starts once readers have fetched
// nothing for a second (five seconds at most), or a scan begins: such
// reads are mostly a container starting, and a prefetch that does not
// yield would take the CPU and the link from the rest of that start, and
// from a second container started right after it (measured through
// containerd: 0.37 s instead of 0.56-0.76 s for a second python3 start).
//
// Layer.Scanning tells a server that readers are scanning the layer (a
// scan showed, or its prefetch stored a window, within the last ten
// seconds), and Layer.ReadLocal gives a small file's bytes whole when they
// are all stored, never fetching: package unionfs hands such files to the
// kernel's page cache as a walk lists their directory (local.go).
//
// # Whole files
//
// With WithFileStore, a file of at least WholeFileMin bytes whose chunks
// are all stored when a Content of it is closed is assembled, in the
// background, into a whole-file entry keyed by the file's digest from the
// TOC; the store checks the bytes against that digest, so a TOC whose file
// digest disagrees with its chunks never gets one. Open then returns that
// file itself, an *os.File, which package unionfs passes through to the
// kernel: warm reads of a cached file never reach strata.
//
// Content-addressed sharing has a price: a layer whose TOC names a digest
// the cache holds is served those bytes. A TOC is verified against its
// manifest, so an image can only name content by its digest; digests of
// private content must be treated as secrets on a node shared by tenants.
//
// # Concurrency
//
// A Layer's tree is immutable once opened; it and its Contents are safe for
// concurrent use. Layer.mu guards the table of chunks being fetched (and
// the bad ones): a chunk is claimed there by exactly one fetch, the one of
// whichever window took it first, and every other reader of it waits for
// that fetch, so no chunk is fetched twice at once. A fetch Puts its chunk
// in the store before it leaves the table, and a claim asks the store again
// under the lock, so a chunk that arrives between a reader's miss and its
// claim is found, not fetched again. A window is fetched under its first
// reader's context (a read-ahead under the layer's); when that context
// ends, readers that were waiting for one of its chunks fetch it with their
// own.
//
// # Lifecycle
//
// Open starts nothing. Reads and Prefetch start background goroutines
// (read-ahead, prefetch, whole-file assembly, and the verification of the
// rest of a window), all owned by the layer: they end by themselves, and
// Close cancels them and waits for them. A closed
// layer still reads, without read-ahead. Close it when its mount ends.
//
// # Stats
//
// Stats counts chunk reads served from the store (ChunkHits) or by a fetch
// already under way (ChunkWaits), chunks fetched and verified (ChunkFetches,
// window and read-ahead chunks included), the blob reads made for them
// (RangeRequests, one Range request each through lazy/remote), read-aheads
// and prefetch windows started, opens served by a whole file and files
// assembled, and failed fetches (a cancelled one is not a failure).
package lazy
