package layer

import (
	"strings"
	"syscall"
	"testing"
)

func TestClassify(t *testing.T) {
	const reg, chr, dir = syscall.S_IFREG, syscall.S_IFCHR, syscall.S_IFDIR
	tests := []struct {
		name     string
		mode     uint32
		rdev     uint64
		kind     Kind
		appliesT string
	}{
		{"file", reg, 0, KindPlain, "file"},
		{"dir", dir, 0, KindPlain, "dir"},
		{".wh.file", reg, 0, KindWhiteout, "file"},
		{".wh.dir", dir, 0, KindWhiteout, "dir"}, // the marker's own type does not matter
		{".wh..wh..opq", reg, 0, KindOpaque, ""},
		{".wh..wh.plnk", dir, 0, KindHidden, ""},
		{".wh..wh.aufs", reg, 0, KindHidden, ""},
		{".wh.", reg, 0, KindHidden, ""},       // whiteout of the empty name
		{".wh...", reg, 0, KindHidden, ""},     // whiteout of ".."
		{".wh..", reg, 0, KindHidden, ""},      // whiteout of "."
		{"gone", chr, 0, KindWhiteout, "gone"}, // overlayfs whiteout
		{"tty", chr, 0x0501, KindPlain, "tty"}, // a real char device
		{".", dir, 0, KindHidden, ""},
		{"..", dir, 0, KindHidden, ""},
		{"", reg, 0, KindHidden, ""},
		{"a/b", reg, 0, KindHidden, ""},
		{strings.Repeat("x", 256), reg, 0, KindHidden, ""},
		{strings.Repeat("x", 255), reg, 0, KindPlain, strings.Repeat("x", 255)},
		{".whfile", reg, 0, KindPlain, ".whfile"},
	}
	for _, tc := range tests {
		kind, applies := Classify(tc.name, tc.mode, tc.rdev)
		if kind != tc.kind || applies != tc.appliesT {
			t.Errorf("Classify(%q, %o, %#x) = %v, %q; want %v, %q", tc.name, tc.mode, tc.rdev, kind, applies, tc.kind, tc.appliesT)
		}
	}
}

func TestOpaqueAndPrivateXattrs(t *testing.T) {
	if !IsOpaqueXattr("trusted.overlay.opaque", []byte("y")) || !IsOpaqueXattr("user.overlay.opaque", []byte("y")) {
		t.Error("opaque xattr not recognised")
	}
	if IsOpaqueXattr("trusted.overlay.opaque", []byte("n")) || IsOpaqueXattr("user.foo", []byte("y")) {
		t.Error("non-opaque xattr taken as opaque")
	}
	for _, x := range []string{"trusted.overlay.opaque", "trusted.overlay.redirect", "user.overlay.origin"} {
		if !IsPrivateXattr(x) {
			t.Errorf("%s should be private", x)
		}
	}
	if IsPrivateXattr("user.mime") || IsPrivateXattr("security.capability") {
		t.Error("ordinary xattr taken as private")
	}
}

func TestValidPath(t *testing.T) {
	good := []string{"", "a", "a/b", "usr/lib/x86_64-linux-gnu", ".hidden/x"}
	bad := []string{"/a", "a/", "a//b", "./a", "a/../b", "..", ".", "a/./b", "a\x00b"}
	for _, p := range good {
		if !ValidPath(p) {
			t.Errorf("ValidPath(%q) = false", p)
		}
	}
	for _, p := range bad {
		if ValidPath(p) {
			t.Errorf("ValidPath(%q) = true", p)
		}
	}
}
