package unionfs

import (
	"context"
	"fmt"
	"testing"

	"github.com/stratafs/strata/layer"
)

// benchLayers makes n layers whose root holds size entries each, half of
// them shared with the layer below (so that the merge has work to do) and a
// few whiteouts.
func benchLayers(n, size int) []layer.Layer {
	ls := make([]layer.Layer, n)
	for i := range ls {
		var es []layer.Entry
		for j := 0; j < size; j++ {
			name := fmt.Sprintf("e%06d", j+i*size/2)
			typ := layer.TypeReg
			if j%10 == 0 {
				typ = layer.TypeDir
			}
			if j%97 == 0 && i > 0 {
				typ = layer.TypeWhiteout
			}
			es = append(es, layer.Entry{Name: name, Type: typ, ID: uint64(j)})
		}
		ls[i] = memLayer{"": layer.Dir{Entries: es}}
	}
	return ls
}

// BenchmarkMergeLower: the merged listing a directory computes on its first
// lookup or readdir.
func BenchmarkMergeLower(b *testing.B) {
	for _, tc := range []struct{ layers, size int }{{1, 1000}, {3, 1000}, {3, 10000}} {
		b.Run(fmt.Sprintf("%dx%d", tc.layers, tc.size), func(b *testing.B) {
			ls := benchLayers(tc.layers, tc.size)
			var dirs []int
			for i := len(ls) - 1; i >= 0; i-- {
				dirs = append(dirs, i)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := mergeLower(context.Background(), ls, dirs, ""); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkLowerLookup: finding one name in a merged listing, what every
// lookup below a lower directory costs once the listing is built.
func BenchmarkLowerLookup(b *testing.B) {
	ls := benchLayers(3, 10000)
	kids, err := mergeLower(context.Background(), ls, []int{2, 1, 0}, "")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		kids.get(kids.names[i%len(kids.names)])
		i++
	}
}

// BenchmarkInoTable: the inode number of an entry, looked up on every
// lookup and readdir entry.
func BenchmarkInoTable(b *testing.B) {
	t := newInoTable()
	for i := range 100000 {
		t.get(inoKey{layer: i % 3, id: uint64(i)})
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		t.get(inoKey{layer: i % 3, id: uint64(i % 100000)})
		i++
	}
}
