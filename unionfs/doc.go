// Package unionfs serves a stack of read-only layers plus an optional
// writable upper directory as one tree over FUSE, with kernel overlayfs's
// semantics and upper-directory format.
//
// # The merged view
//
// Layers are given lowest first; the upper directory, when there is one,
// sits above them all. For a name in a directory, the highest place that
// mentions it decides:
//
//	highest mention of NAME          the merged tree shows
//	-------------------------        ------------------------------------------
//	a whiteout                       nothing; NAME is deleted from all below
//	a non-directory                  that entry; everything below is hidden
//	a directory                      a directory whose children merge this
//	                                 directory with the same directory in each
//	                                 lower place, down to the first whiteout,
//	                                 non-directory or opaque directory
//
// An opaque directory shows only its own children. A directory a layer only
// implies (layer.Entry.Implied: deeper names, no entry of its own) takes
// the attributes of the same directory in the layers below, as extracting
// the layers in order would leave it. A hard link to a file of a layer
// below (layer.TypeLowerLink) shows that file, as the layers below it show
// it, under the link's name, as a file of its own. The rules for reading
// whiteouts and opacity out of a layer live in package layer (Classify); the
// merging of lower layers lives in merge.go; the upper directory is read by
// upper.go, in overlayfs form only: whiteout = character device 0/0, opaque
// directory = xattr trusted.overlay.opaque=y. Overlay bookkeeping xattrs
// (trusted.overlay.*) are never shown and cannot be set through the mount.
//
// # Copy-up
//
// The lower layers are never written. The first change to a lower entry
// copies it up: its parent directories are created in the upper directory
// first (with their lower owner, mode, times and xattrs), then the entry. A
// file's copy is written to an unnamed O_TMPFILE in its upper parent,
// fsync'ed, and only then linked under its name, so a crash never leaves a
// partial copy visible. Deleting a name that exists below leaves a whiteout;
// a directory created over a whiteout is opaque. Renaming a directory that has
// lower parts copies its whole subtree up first and makes it opaque (kernel
// overlayfs without redirect_dir answers EXDEV instead). Copying up one name
// of a hard-linked lower file links its other names to the copy too, so they
// stay one file (overlayfs with index=off would break the link).
//
// Names starting with ".strata-tmp-" are reserved for entries under
// construction: they are never shown, and creating one fails with EPERM.
//
// # Nodes and inode numbers
//
// Each go-fuse inode is a *node that remembers where its entry lives: the
// topmost lower entry (for a file) or the contributing lower layers (for a
// directory), and whether it exists in the upper directory. strata is the only
// writer of the upper directory while mounted, so that knowledge stays true;
// changing the upper directory underneath a live mount is not supported.
// Inode numbers come from a table keyed by (layer, entry ID) for lower
// entries and by the upper inode number for upper ones: stable for the life of
// the mount, unique across layers, shared by hard links of one layer, and kept
// across copy-up.
//
// # Kernel caching
//
// Entries and attributes are handed to the kernel with a long timeout
// (WithTimeout; one hour by default): nothing else changes the tree, and every
// change strata makes goes through the kernel, which updates its own caches.
// Lower files are immutable, so their pages stay cached across opens.
//
// # Passthrough
//
// Where the kernel allows FUSE passthrough (Linux >= 6.9, root), an open
// regular file is handed to the kernel as a backing file (the upper file, or
// the lower layer's file), and reads and writes no longer reach strata. The
// kernel keeps one backing file per inode while any passthrough open exists,
// and refuses to mix passthrough and cached opens of one inode. So once a
// lower file has been opened with passthrough, a later copy-up switches that
// inode to direct I/O through strata for the rest of the mount: a write can
// never reach the lower file's backing, and no open fails. A read-only
// descriptor opened before a copy-up keeps reading the lower bytes, as with
// kernel overlayfs before Linux 4.19.
//
// A lower file of a lazy layer is served through strata until its bytes are
// all local; then its layer opens it as a local file (package lazy keeps
// such files whole) and strata passes it through. Each node counts its
// open handles of either kind, so a passthrough open is only handed out
// while no handle served through strata is open, and the other way round:
// a new open shares the backing of the passthrough handles already open.
//
// The mount's read-ahead is raised to 1 MiB (the bdi's read_ahead_kb),
// which is also the size of one READ the kernel sends: a sequential reader
// of a file served through strata costs one round trip per MiB, not per
// 128 KiB.
//
// # Open-less mounts and kernel overlayfs
//
// An OPEN and a RELEASE cost two round trips to strata per file opened,
// which dominates reading many small files that the kernel has cached. A
// read-only mount made WithOpenless answers the first OPEN with ENOSYS:
// the kernel then opens and closes files by itself, never passes them
// through, and keeps their pages across opens. A READ then comes without a
// handle, and the node serves it through a handle of its own, kept until
// the kernel forgets the node (a bounded number at once). Directories go
// the same way: the first OPENDIR is answered ENOSYS too, the kernel then
// caches every listing it reads (FOPEN_CACHE_DIR), and the READDIRPLUS
// requests that fill it are served through a handle kept for that listing
// until it has been read to the end (noOpendir), so that listing a
// directory again costs no round trip at all.
//
// A mount also feeds the page cache ahead of a scan (feed.go): when a layer
// says readers are scanning it (package lazy's do, from their fetches),
// each small local lower file that a lookup or a READDIRPLUS makes known to
// the kernel, and that nothing has opened yet, is handed to it whole
// (FUSE_NOTIFY_STORE), once, so that a walk reading every file reads them
// from the page cache, not with a READ each. The bytes handed over stay the
// file's: an open-less mount is read-only, and in the union a copy-up waits
// for a feed of the file under way before the write that asked for it.
//
// A read-only mount whose layers all report no extended attributes (a
// layer may tell, as package lazy's do from their TOC) answers the first
// GETXATTR with ENOSYS, and the kernel answers every later getxattr on the
// mount itself: kernel overlayfs over it otherwise asks for its own xattrs
// on every directory it looks up, in every new overlay.
//
// Such a mount is the lower layer of choice for kernel overlayfs
// (MountOverlay), which then handles writes, copy-up and whiteouts itself,
// in the same upper-directory format strata's union uses: the options keep
// redirect_dir, index and metacopy off, so the upper holds only plain
// copies and whiteouts, and xino on, so inode numbers stay one per file.
// WaitUnmounted and WatchMounts tell a server when such an overlay is gone.
//
// # Interrupts
//
// A FUSE request is interrupted whenever its caller gets a signal, and Go
// programs get one (SIGURG) at random for goroutine preemption. Kernel
// overlayfs completes such calls, so strata does too: the contexts it hands
// to layers ignore interrupts, and a copy-up is never left half done.
//
// # Locking
//
// The kernel serialises changes within one directory. A node's mutex guards
// its own state (its lower listing, copy-up); locks are only ever taken from
// a node towards its ancestors (copy-up makes the parents first), never the
// other way. renameMu is held for writing only by a rename that copies a
// whole subtree up, and for reading by every other change to the upper
// directory.
package unionfs
