// Package layer is strata's model of one read-only image layer: a tree of
// [Entry] values and a way to open each regular file's bytes.
//
// # The model
//
// A layer is read one directory at a time: [Layer.ReadDir] returns a [Dir],
// the directory's children sorted by name plus whether the directory is
// opaque. Paths are slash-separated, relative to the layer root, cleaned, with
// "" meaning the root ("usr/bin", never "/usr/bin" or "usr/bin/").
//
// Layers arrive in two encodings of deletion, and this package turns both
// into one form so that no consumer sees either:
//
//	on disk (OCI tar form)          on disk (overlayfs form)             in a Dir
//	----------------------          ------------------------             --------
//	file ".wh.NAME"                 char device 0/0 named NAME           Entry{Name: NAME, Type: TypeWhiteout}
//	file ".wh..wh..opq" in D        xattr trusted.overlay.opaque=y on D  Dir{Opaque: true} when D is read
//
// A whiteout entry deletes NAME in every layer below; an opaque directory
// hides every entry of the same directory in the layers below. Neither is ever
// shown to a user of the merged tree: the rules live in [Classify] and are
// applied by whoever merges layers (package unionfs).
//
// # Identity
//
// [Entry.ID] is unique within one layer and shared by the hard links of one
// file, so a merger can give every (layer, ID) pair one inode number.
//
// # Trust
//
// A layer's names come from outside (an image, a directory). ReadDir never
// returns ".", "..", an empty name or a name holding '/', and [Dir] entries are
// unique by name. Opening is confined to the layer root: a symlink inside a
// layer is data, never followed by strata.
//
// # Concurrency
//
// A Layer is immutable once opened and safe for concurrent use.
package layer
