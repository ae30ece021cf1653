package unionfs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stratafs/strata/layer"
	"golang.org/x/sys/unix"
)

// tellingLayer is a memLayer that says whether its entries carry xattrs,
// as package lazy's layers do.
type tellingLayer struct {
	memLayer
	xattrs bool
}

func (l tellingLayer) HasXattrs() bool { return l.xattrs }

// TestNoXattrs: a read-only mount of layers that all say they have no
// xattrs answers getxattr with ENOSYS, which the kernel turns into
// EOPNOTSUPP for good, with no further round trip; kernel overlayfs over it
// works. Any layer with xattrs, a layer that cannot tell, or an upper keeps
// the per-entry answers.
func TestNoXattrs(t *testing.T) {
	file := layer.Entry{Name: "f", Type: layer.TypeReg, Perm: 0o644, ID: 2}
	tagged := layer.Entry{Name: "g", Type: layer.TypeReg, Perm: 0o644, ID: 3, Xattrs: map[string][]byte{"user.k": []byte("v")}}
	plain := memLayer{"": dir(false, layer.Entry{Name: "d", Type: layer.TypeDir, Perm: 0o755, ID: 1}, file), "d": dir(false)}
	withX := memLayer{"": dir(false, tagged)}
	tests := []struct {
		name   string
		layers []layer.Layer
		upper  bool
		want   error // getxattr user.k of f
	}{
		{"none has xattrs", []layer.Layer{tellingLayer{plain, false}, tellingLayer{memLayer{"": dir(false)}, false}}, false, unix.EOPNOTSUPP},
		{"one has xattrs", []layer.Layer{tellingLayer{plain, false}, tellingLayer{withX, true}}, false, unix.ENODATA},
		{"a layer cannot tell", []layer.Layer{tellingLayer{plain, false}, plain}, false, unix.ENODATA},
		{"with an upper", []layer.Layer{tellingLayer{plain, false}}, true, unix.ENODATA},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mnt := t.TempDir()
			opts := []Option{WithOpenless(!tc.upper)}
			if tc.upper {
				opts = []Option{WithUpper(t.TempDir())}
			}
			srv, err := Mount(context.Background(), mnt, tc.layers, opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Unmount()
			for range 2 { // the second answer comes from the kernel alone
				_, err := unix.Lgetxattr(filepath.Join(mnt, "f"), "user.k", make([]byte, 16))
				if !errors.Is(err, tc.want) {
					t.Fatalf("getxattr f user.k: %v, want %v", err, tc.want)
				}
			}
			if tc.want == unix.ENODATA && len(tc.layers) == 2 {
				if _, ok := tc.layers[1].(tellingLayer); ok {
					buf := make([]byte, 16)
					n, err := unix.Lgetxattr(filepath.Join(mnt, "g"), "user.k", buf)
					if err != nil || string(buf[:n]) != "v" {
						t.Errorf("getxattr g user.k = %q, %v; want v", buf[:max(n, 0)], err)
					}
				}
			}
			if tc.upper || tc.want != unix.EOPNOTSUPP {
				return
			}
			// Kernel overlayfs over the mount, as a container has it.
			base := t.TempDir()
			ovl := filepath.Join(base, "merged")
			if err := os.MkdirAll(ovl, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(filepath.Join(base, "upper"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := MountOverlay(mnt, filepath.Join(base, "upper"), filepath.Join(base, "work"), ovl); err != nil {
				t.Fatal(err)
			}
			defer unix.Unmount(ovl, 0)
			if ents, err := os.ReadDir(filepath.Join(ovl, "d")); err != nil || len(ents) != 0 {
				t.Errorf("overlay: list d: %v, %v", ents, err)
			}
			if err := os.WriteFile(filepath.Join(ovl, "d", "new"), []byte("x"), 0o644); err != nil {
				t.Errorf("overlay: write: %v", err)
			}
			if _, err := unix.Lgetxattr(filepath.Join(ovl, "f"), "user.k", make([]byte, 16)); !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.ENODATA) {
				t.Errorf("overlay: getxattr f: %v, want no such attribute", err)
			}
		})
	}
}
