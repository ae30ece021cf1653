// Package convert re-writes an image's layers into a lazily loadable
// format, eStargz or zstd:chunked, so that package lazy (and
// stargz-snapshotter, or podman through containers/storage) can mount the
// image from its registry without pulling it.
//
// # The model
//
// An image is a manifest naming a config and an ordered list of layer
// blobs; the config's rootfs.diff_ids name each layer's uncompressed tar.
// Converting keeps the image the same filesystem and changes only how each
// layer is packed:
//
//	source layer blob ──verify digest──▶ temp file ──estargz.Build──▶ new blob (temp file)
//	 (gzip, zstd or tar)                              │ tar re-ordered: .no.prefetch.landmark first;
//	                                                  │ each chunk of each file its own gzip member
//	                                                  │ or zstd frame; TOC + footer at the end
//	                                                  ▼
//	manifest layer: digest/size of the new blob, media type and annotations below
//	config: rootfs.diff_ids[i] = sha256 of the new blob's uncompressed tar
//
// The new tar is not the old one byte for byte (the library adds the
// landmark entry and may re-encode headers), so its diff_id is taken from
// the new blob, never copied from the old config. The config is otherwise
// kept: it is edited as raw JSON, so that fields unknown to
// go-containerregistry survive. The result is always an OCI manifest (a
// Docker one cannot carry a zstd layer); manifest annotations and subject
// are kept.
//
// # What other tools read
//
//	format        media type                                 layer annotations
//	eStargz       application/vnd.oci.image.layer.v1.tar+gzip  containerd.io/snapshot/stargz/toc.digest = sha256 of the TOC JSON
//	                                                           io.containers.estargz.uncompressed-size = tar size in bytes
//	zstd:chunked  application/vnd.oci.image.layer.v1.tar+zstd  io.github.containers.zstd-chunked.manifest-checksum = sha256 of the compressed TOC
//	                                                           io.github.containers.zstd-chunked.manifest-position = "off:csize:usize:1"
//
// The TOC digest annotation is the root of trust for a lazy reader (see
// package lazy). The estargz library writes zstd:chunked's two keys under
// their earlier names (io.containers.…); they are renamed to the
// io.github.containers.… keys containers/storage and package lazy read.
// No tar-split is written, so a containers/storage that insists on one for
// a partial pull falls back to pulling the whole layer, which stays an
// ordinary zstd stream.
//
// # Layers left alone
//
// A layer whose descriptor already announces a TOC (lazy.TOCDigest
// succeeds) with the wanted format's media type is kept byte for byte, its
// diff_id and annotations too. Non-distributable layers are kept: their
// blobs are not in the registry. When every layer is kept and the source
// is already an OCI manifest, Convert returns the source image itself, so
// converting twice yields the same digest.
//
// # Determinism
//
// estargz.Build cuts a layer into as many parts as its parallelism and
// compresses them at once; the parts fix the chunk boundaries. The
// parallelism is therefore a fixed option (DefaultParallelism), not the
// machine's core count, so two machines converting the same image with the
// same options get the same digests.
//
// # Resources and lifecycle
//
// Layers are converted one at a time. A conversion needs the source blob
// in a temporary file (Build wants random access; the blob's digest is
// checked as it is copied, since layout blobs are not verified on read),
// plus the estargz library's own temporary files (in os.TempDir: the
// uncompressed tar and the compressed parts) while it runs. New blobs stay
// in a directory under WithTempDir until Result.Close, which the caller
// calls after writing Result.Image out. ctx cancels a conversion between
// reads; no goroutine outlives Convert except the library's, which end once
// its blob is closed.
//
// # Locations
//
// ParseLocation, ReadImage and WriteImage move images between registries
// (go-containerregistry's remote, with the docker keychain; plain HTTP for
// loopback registries or when Insecure) and OCI image layouts written as
// "oci:PATH[:TAG]", where TAG is the index's org.opencontainers.image.ref.name.
// An index resolves to its image for one platform; converting every
// platform of an index is not done yet.
package convert
