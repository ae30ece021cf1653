package unionfs

import (
	"context"
	"reflect"
	"testing"

	"github.com/stratafs/strata/layer"
)

// memLayer is a layer held in memory: path -> directory.
type memLayer map[string]layer.Dir

func (m memLayer) Root(context.Context) (layer.Entry, error) {
	return layer.Entry{Type: layer.TypeDir, Perm: 0o755}, nil
}
func (m memLayer) ReadDir(_ context.Context, p string) (layer.Dir, error) {
	d, ok := m[p]
	if !ok {
		return layer.Dir{}, layer.ErrNotExist
	}
	return d, nil
}
func (m memLayer) Open(context.Context, string) (layer.Content, error) { return nil, layer.ErrNotExist }
func (m memLayer) String() string                                      { return "mem" }

func dir(opaque bool, es ...layer.Entry) layer.Dir { return layer.Dir{Entries: es, Opaque: opaque} }
func f(name string) layer.Entry                    { return layer.Entry{Name: name, Type: layer.TypeReg} }
func d(name string) layer.Entry                    { return layer.Entry{Name: name, Type: layer.TypeDir} }
func wh(name string) layer.Entry                   { return layer.Entry{Name: name, Type: layer.TypeWhiteout} }

func TestMergeLower(t *testing.T) {
	type want struct {
		layer int
		typ   layer.Type
		dirs  []int
	}
	tests := []struct {
		name   string
		layers []memLayer // lowest first
		want   map[string]want
	}{
		{"top file wins", []memLayer{{"": dir(false, f("a"))}, {"": dir(false, f("a"))}},
			map[string]want{"a": {1, layer.TypeReg, nil}}},
		{"lower names show through", []memLayer{{"": dir(false, f("a"))}, {"": dir(false, f("b"))}},
			map[string]want{"a": {0, layer.TypeReg, nil}, "b": {1, layer.TypeReg, nil}}},
		{"whiteout hides file", []memLayer{{"": dir(false, f("a"))}, {"": dir(false, wh("a"))}},
			map[string]want{}},
		{"whiteout hides dir", []memLayer{{"": dir(false, d("a")), "a": dir(false, f("x"))}, {"": dir(false, wh("a"))}},
			map[string]want{}},
		{"whiteout only hides below", []memLayer{{"": dir(false, f("a"))}, {"": dir(false, wh("a"))}, {"": dir(false, f("a"))}},
			map[string]want{"a": {2, layer.TypeReg, nil}}},
		{"dirs merge", []memLayer{{"": dir(false, d("a"))}, {"": dir(false, d("a"))}},
			map[string]want{"a": {1, layer.TypeDir, []int{1, 0}}}},
		{"file hides dir below", []memLayer{{"": dir(false, d("a"))}, {"": dir(false, f("a"))}},
			map[string]want{"a": {1, layer.TypeReg, nil}}},
		{"dir hides file below", []memLayer{{"": dir(false, f("a"))}, {"": dir(false, d("a"))}},
			map[string]want{"a": {1, layer.TypeDir, []int{1}}}},
		{"whiteout between dirs ends merge", []memLayer{{"": dir(false, d("a"))}, {"": dir(false, wh("a"))}, {"": dir(false, d("a"))}},
			map[string]want{"a": {2, layer.TypeDir, []int{2}}}},
		{"opaque root cuts lower layers", []memLayer{{"": dir(false, f("a"), d("b"))}, {"": dir(true, f("c"))}},
			map[string]want{"c": {1, layer.TypeReg, nil}}},
		{"three layers", []memLayer{{"": dir(false, d("x"), f("y"))}, {"": dir(false, d("x"))}, {"": dir(false, d("x"), wh("y"))}},
			map[string]want{"x": {2, layer.TypeDir, []int{2, 1, 0}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ls := make([]layer.Layer, len(tc.layers))
			var top []int
			for i, l := range tc.layers {
				ls[i] = l
				top = append([]int{i}, top...)
			}
			got, err := mergeLower(context.Background(), ls, top, "")
			if err != nil {
				t.Fatal(err)
			}
			if len(got.children) != len(tc.want) || len(got.names) != len(tc.want) {
				t.Fatalf("got %d children %v, want %d", len(got.children), got.names, len(tc.want))
			}
			for name, w := range tc.want {
				c, ok := got.get(name)
				if !ok {
					t.Fatalf("%s missing", name)
				}
				if c.layer != w.layer || c.entry.Type != w.typ || !reflect.DeepEqual(c.dirs, w.dirs) {
					t.Errorf("%s = layer %d %v dirs %v; want layer %d %v dirs %v", name, c.layer, c.entry.Type, c.dirs, w.layer, w.typ, w.dirs)
				}
			}
		})
	}
}

// TestImpliedDirInherits: a directory a layer only implies (by deeper names)
// takes its attributes from the same directory below, through any number of
// implied ones, and keeps the identity of the topmost.
func TestImpliedDirInherits(t *testing.T) {
	real := layer.Entry{Name: "tmp", Type: layer.TypeDir, Perm: 0o1777, UID: 7, GID: 8, Mtime: 42, ID: 1,
		Xattrs: map[string][]byte{"user.x": []byte("y")}}
	implied := func(id uint64) layer.Entry {
		return layer.Entry{Name: "tmp", Type: layer.TypeDir, Perm: 0o755, ID: id, Implied: true}
	}
	layers := []layer.Layer{
		memLayer{"": dir(false, real)},
		memLayer{"": dir(false, implied(2))},
		memLayer{"": dir(false, implied(3))},
	}
	l, err := mergeLower(context.Background(), layers, []int{2, 1, 0}, "")
	if err != nil {
		t.Fatal(err)
	}
	c, ok := l.get("tmp")
	if !ok {
		t.Fatal("tmp missing")
	}
	e := c.entry
	if e.Perm != 0o1777 || e.UID != 7 || e.GID != 8 || e.Mtime != 42 || string(e.Xattrs["user.x"]) != "y" || e.Implied {
		t.Errorf("implied tmp = %+v; want the attributes of layer 0's tmp", *e)
	}
	if e.ID != 3 || c.layer != 2 || !reflect.DeepEqual(c.dirs, []int{2, 1, 0}) {
		t.Errorf("identity: ID %d layer %d dirs %v; want 3, 2, [2 1 0]", e.ID, c.layer, c.dirs)
	}
	only, err := mergeLower(context.Background(), layers[1:], []int{1, 0}, "")
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := only.get("tmp"); c.entry.Perm != 0o755 || c.entry.UID != 0 {
		t.Errorf("implied with nothing below = %+v; want the defaults", *c.entry)
	}
}
