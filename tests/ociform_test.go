package tests

import (
	"fmt"
	"path/filepath"
	"testing"
)

// ociForm rewrites a layer spec from overlayfs-form deletions into the OCI
// tar form: a whiteout becomes an empty ".wh.NAME" file, an opaque
// directory a plain directory holding ".wh..wh..opq".
func ociForm(spec []ent) []ent {
	out := make([]ent, 0, len(spec))
	for _, e := range spec {
		switch e.kind {
		case 'w':
			out = append(out, mkFile(filepath.Join(filepath.Dir(e.path), ".wh."+filepath.Base(e.path)), ""))
		case 'o':
			e.kind = 'd'
			out = append(out, e, mkFile(filepath.Join(e.path, ".wh..wh..opq"), ""))
		default:
			out = append(out, e)
		}
	}
	return out
}

// TestOCIFormLayers: the same layers, with deletions written in OCI form or
// in overlayfs form, give strata the same merged tree, in which no marker
// shows.
func TestOCIFormLayers(t *testing.T) {
	specs := stdLayers()
	converted := 0
	for _, s := range specs {
		for _, e := range s {
			if e.kind == 'w' || e.kind == 'o' {
				converted++
			}
		}
	}
	if converted < 3 {
		t.Fatalf("the standard layers hold only %d whiteouts and opaque dirs: too few to test", converted)
	}
	trees := map[string]map[string]string{}
	for _, form := range []string{"overlayfs", "oci"} {
		base := t.TempDir()
		var layers []string
		for i, s := range specs {
			if form == "oci" {
				s = ociForm(s)
			}
			l := filepath.Join(base, fmt.Sprintf("layer%d", i))
			mustMkdir(t, l)
			buildTree(t, l, s)
			layers = append(layers, l)
		}
		m := mountStrata(t, layers, "")
		trees[form] = captureTree(t, m.Dir, viewMerged)
		m.unmount(t)
	}
	compareTreesNamed(t, "merged tree of OCI-form layers", "overlayfs form", "OCI form", trees["overlayfs"], trees["oci"])
	for p := range trees["oci"] {
		if b := filepath.Base(p); len(b) > 4 && b[:4] == ".wh." {
			t.Errorf("OCI marker %s shows in the merged tree", p)
		}
	}
}
