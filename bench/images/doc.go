// Package images builds the benchmark suite's container images once,
// keeps them in a cache directory, and hands out where they are: one OCI
// image layout per image, holding the image in four layer formats.
//
// # The images
//
//	image          layers (one per build step)                        how it is made
//	debian-python  base    debootstrap --variant=minbase bookworm      from the mirror apt already uses
//	               python  apt-get install --no-install-recommends python3, in a chroot
//	               app     /app/main.py + data files                   written by Go
//	debian-large   debian-python's three layers, then
//	               toolchain  gcc g++ make libc6-dev libboost1.74-dev linux-headers-amd64 golang-go
//	               data       /data/blob-{1,2,3}.bin, 128 MiB each     deterministic, about half compressible
//	quick          base    the host's /usr/bin/python3 + the libraries ldd names, /etc, /dev nodes
//	               python  a stdlib subset (top-level modules, lib-dynload, a few packages)
//	               app     the same /app as debian-python
//
// Synthetic images, one layer each, written by Go alone (synthetic.go),
// serve the scenarios the others cannot: bigfile-1g (one 1 GiB file, the
// copy-up), files-100k, files-2k and files-tiny (that many small files in
// nested directories: memory per 100,000 files, measured against the
// tiny one). BuildSynthetic makes the ones asked for.
//
// debian-large is over 1 GB unpacked and over 50,000 files: the size at
// which pulling a whole image hurts and lazy loading should pay. quick
// is a few MB, builds in seconds with no network and no debootstrap, and
// runs `chroot ROOT python3 -c 'print(1)'`: it is the images of the CI
// smoke test and of this package's own tests, and its steps make every
// kind of layer change (whiteouts of a file and of a directory, a
// directory replaced by a file, a mode change, hard links, symlinks,
// character devices, an xattr).
//
// # Layers are diffs of one rootfs
//
// Each image is built in one rootfs directory, step after step. A layer is
// what its step changed:
//
//	snapshot S0 (empty, or the parent image's layers extracted)
//	run step 1 ─▶ snapshot S1 ─▶ layer 1 = diff(S0, S1)
//	run step 2 ─▶ snapshot S2 ─▶ layer 2 = diff(S1, S2) …
//
// A snapshot records each entry's inode, owner, mode, size, mtime and
// ctime. The kernel updates ctime on every change to an inode and nothing
// can set it back, so an entry with an equal record was not touched; no
// copy of the tree is needed. The diff (diffTrees) holds every new or
// changed entry, every directory above one, and an OCI whiteout
// ".wh.NAME" for every deleted entry whose parent is still a directory.
// The tar (writeLayer) keeps numeric owners, modes, mtimes to the second,
// symlinks, devices, FIFOs and xattrs (PAX SCHILY.xattr.*); a file with
// several names is written once and then as tar hard links. Extract is
// the inverse, used to start debian-large from debian-python's layers and
// by the tests to check that the layers rebuild the tree exactly.
//
// # Chroot steps
//
// debootstrap and the apt steps run in a private mount namespace (unshare
// -m): /proc, /sys and the host's resolv.conf (read-only, for the mirror)
// are mounted for the step and vanish with the namespace, so an
// interrupted build leaves nothing mounted on the host, and the snapshot
// refuses to cross into a mount if one were left. policy-rc.d forbids
// starting services; a process still running in the rootfs after the step
// is killed and fails the build. apt's lists and downloaded packages are
// removed in the step that made them, as a Dockerfile's RUN line does.
//
// # Formats
//
//	format        tag           media type                                 made by
//	gzip          gzip          application/vnd.oci.image.layer.v1.tar+gzip  klauspost gzip, level 6
//	zstd          zstd          application/vnd.oci.image.layer.v1.tar+zstd  klauspost zstd, level 3
//	zstd:chunked  zstd-chunked  application/vnd.oci.image.layer.v1.tar+zstd  lazy/convert from the zstd image
//	estargz       estargz       application/vnd.oci.image.layer.v1.tar+gzip  lazy/convert from the gzip image
//
// All four live in one layout, CACHE/NAME/oci, tagged as above, so
// "oci:CACHE/NAME/oci:TAG" names one (Variant.Location). A child image
// reuses its parent's blobs, and the converter is deterministic, so
// debian-large shares its first three layers with debian-python in every
// format. Configs carry a fixed creation time.
//
// # The cache
//
//	CACHE/.lock              flock: one build at a time per cache
//	CACHE/NAME/RECIPE        hash of the recipe (written last)
//	CACHE/NAME/image.json    the Image: sizes, counts, variants, timings
//	CACHE/NAME/oci/          the layout
//	CACHE/NAME/rootfs/       quick only: the tree its layers were cut from
//	CACHE/debs/              debootstrap's package cache
//	CACHE/work/NAME/         scratch while building (rootfs, layer tars, logs), removed after
//
// An image is rebuilt when its recipe hash changes: the hash covers
// recipeVersion (bump it when this package's packing changes), the
// package lists, sizes and seeds, the app's version, the parent's hash
// and, for quick, the host interpreter's identity. Options.Rebuild forces
// it. Building both Debian images needs about 7 GB free at its peak
// (rootfs, layer tars, compressed copies, conversion scratch); the cache
// keeps 2.4 GB.
//
// Everything needs root: debootstrap, chroot, device nodes, chown.
package images
