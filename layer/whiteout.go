package layer

import (
	"strings"
	"syscall"
)

// The OCI and overlayfs spellings of deletion. Every rule that turns them
// into TypeWhiteout entries and opaque directories is in this file.
const (
	WhiteoutPrefix = ".wh."
	// WhiteoutMetaPrefix starts AUFS bookkeeping names (".wh..wh.plnk",
	// ".wh..wh..opq"), never shown.
	WhiteoutMetaPrefix = ".wh..wh."
	WhiteoutOpaque     = ".wh..wh..opq"

	// OverlayOpaqueXattr marks an opaque directory in overlayfs form;
	// OverlayUserOpaqueXattr is the same for an overlay mounted with userxattr.
	OverlayOpaqueXattr     = "trusted.overlay.opaque"
	OverlayUserOpaqueXattr = "user.overlay.opaque"
	overlayXattrPrefix     = "trusted.overlay."
	overlayUserXattrPrefix = "user.overlay."
)

// Kind is what a raw directory entry means once deletion markers are read.
type Kind uint8

const (
	// KindPlain is an ordinary entry, shown as it is.
	KindPlain Kind = iota
	// KindWhiteout deletes the name returned with it in the layers below.
	KindWhiteout
	// KindOpaque makes the directory holding it opaque.
	KindOpaque
	// KindHidden is bookkeeping (AUFS metadata, an invalid name): dropped.
	KindHidden
)

// Classify reads one raw entry of a layer directory: its name, its S_IFMT
// type bits and its device number. It returns what the entry means and the
// name it applies to (the deleted name for a whiteout).
func Classify(name string, mode uint32, rdev uint64) (Kind, string) {
	switch {
	case !ValidName(name):
		return KindHidden, ""
	case name == WhiteoutOpaque:
		return KindOpaque, ""
	case strings.HasPrefix(name, WhiteoutMetaPrefix):
		return KindHidden, ""
	case strings.HasPrefix(name, WhiteoutPrefix):
		target := name[len(WhiteoutPrefix):]
		if !ValidName(target) {
			return KindHidden, ""
		}
		return KindWhiteout, target
	case mode&syscall.S_IFMT == syscall.S_IFCHR && rdev == 0:
		return KindWhiteout, name
	}
	return KindPlain, name
}

// IsOpaqueXattr reports whether a directory xattr marks it opaque.
func IsOpaqueXattr(name string, value []byte) bool {
	return (name == OverlayOpaqueXattr || name == OverlayUserOpaqueXattr) &&
		len(value) == 1 && value[0] == 'y'
}

// IsPrivateXattr reports whether an xattr is overlay bookkeeping that the
// merged tree never shows.
func IsPrivateXattr(name string) bool {
	return strings.HasPrefix(name, overlayXattrPrefix) || strings.HasPrefix(name, overlayUserXattrPrefix)
}

// ValidName reports whether name can be one component of a path: not empty,
// not "." or "..", no '/' or NUL, at most 255 bytes.
func ValidName(name string) bool {
	if name == "" || name == "." || name == ".." || len(name) > 255 {
		return false
	}
	return strings.IndexByte(name, '/') < 0 && strings.IndexByte(name, 0) < 0
}

// ValidPath reports whether p is a clean relative slash-separated path whose
// components are all valid names; "" is the root.
func ValidPath(p string) bool {
	if p == "" {
		return true
	}
	for {
		i := strings.IndexByte(p, '/')
		if i < 0 {
			return ValidName(p)
		}
		if !ValidName(p[:i]) {
			return false
		}
		p = p[i+1:]
	}
}
