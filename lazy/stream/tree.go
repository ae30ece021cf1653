package stream

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/stratafs/strata/layer"
)

// node is one raw path of the tar: an entry, a hard link to one, or a
// directory implied by deeper entries. Deletion markers are nodes too; they
// are read with layer.Classify only when a directory is answered.
type node struct {
	e       layer.Entry // Name is the base name; Nlink is computed when answered
	implied bool
	opaque  bool             // directories: an overlayfs opaque xattr in the tar
	file    *fileData        // regular files: shared by hard links
	kids    map[string]*node // directories: every raw child
	listed  bool             // directories: answered (walk order) before the stream ended
}

// fileData locates a regular file's bytes in the spool.
type fileData struct{ off, size int64 }

// tree is the index built as the stream goes. It is guarded by Layer.mu.
type tree struct {
	root   *node
	links  map[uint64][]string // ID -> every path of a non-directory
	count  int
	limit  int
	nextID uint64
}

func newTree(limit int) tree {
	t := tree{links: map[uint64][]string{}, limit: limit}
	t.root = t.newDir("", true)
	return t
}

// newDir makes a directory with the attributes of one no tar entry
// describes: 0755, owned by root, time 0.
func (t *tree) newDir(name string, implied bool) *node {
	t.nextID++
	return &node{
		e:       layer.Entry{Name: name, Type: layer.TypeDir, Perm: 0o755, Nlink: 2, ID: t.nextID, Implied: implied},
		implied: implied,
		kids:    map[string]*node{},
	}
}

// errOrderBroken reports a change to a listing already answered.
var errOrderBroken = errors.New("a directory listed in walk order changed")

// find returns the raw node at p (no deletion rules), or nil.
func (t *tree) find(p string) *node {
	n := t.root
	for p != "" {
		name, rest, _ := strings.Cut(p, "/")
		if n.kids == nil {
			return nil
		}
		if n = n.kids[name]; n == nil {
			return nil
		}
		p = rest
	}
	return n
}

// lookup returns the visible node at p. at is the path of the deepest
// directory it reached, which decides a negative answer in walk order.
func (t *tree) lookup(p string) (n *node, at string, err error) {
	n = t.root
	for rest := p; rest != ""; {
		var name string
		name, rest, _ = strings.Cut(rest, "/")
		if n.e.Type != layer.TypeDir {
			return nil, at, layer.ErrNotDir
		}
		k := n.kids[name]
		if k == nil || !visible(name, k) {
			return nil, at, layer.ErrNotExist
		}
		at = joinPath(at, name)
		n = k
	}
	if n.e.Type == layer.TypeDir {
		at = p
	} else {
		at = parentPath(p)
	}
	return n, at, nil
}

func visible(name string, n *node) bool {
	kind, _ := layer.Classify(name, n.e.Type.Mode(), n.e.Rdev)
	return kind == layer.KindPlain
}

// put records n at p (p != ""), as extracting the tar entry would: a
// directory over a directory takes its attributes and keeps its children;
// anything else replaces what was there.
func (t *tree) put(p string, n *node) error {
	parent, err := t.parentDir(p)
	if err != nil {
		return err
	}
	if parent.listed {
		return fmt.Errorf("%w: %q", errOrderBroken, parentPath(p))
	}
	name := baseName(p)
	n.e.Name = name
	old := parent.kids[name]
	if old != nil && old.e.Type == layer.TypeDir && n.e.Type == layer.TypeDir {
		n.e.ID = old.e.ID
		old.e, old.implied, old.opaque = n.e, false, n.opaque
		return nil
	}
	if old != nil {
		t.remove(p, old)
	}
	if t.count >= t.limit {
		return fmt.Errorf("more than %d entries", t.limit)
	}
	t.count++
	if n.e.ID == 0 {
		t.nextID++
		n.e.ID = t.nextID
	}
	if n.e.Type == layer.TypeDir {
		n.kids = map[string]*node{}
	} else {
		t.links[n.e.ID] = append(t.links[n.e.ID], p)
	}
	parent.kids[name] = n
	return nil
}

// setRoot gives the root the attributes of a tar entry naming it.
func (t *tree) setRoot(n *node) error {
	if n.e.Type != layer.TypeDir {
		return fmt.Errorf("the root is a %s, not a directory", n.e.Type)
	}
	n.e.ID, n.e.Name = t.root.e.ID, ""
	t.root.e, t.root.implied, t.root.opaque = n.e, false, n.opaque
	return nil
}

// parentDir returns the directory holding p, implying it and its own
// parents when the tar has not named them yet.
func (t *tree) parentDir(p string) (*node, error) {
	dir := parentPath(p)
	if dir == "" {
		return t.root, nil
	}
	if d := t.find(dir); d != nil {
		if d.e.Type != layer.TypeDir {
			return nil, fmt.Errorf("%q is inside %q, which is not a directory", p, dir)
		}
		return d, nil
	}
	up, err := t.parentDir(dir)
	if err != nil {
		return nil, err
	}
	if up.listed {
		return nil, fmt.Errorf("%w: %q", errOrderBroken, parentPath(dir))
	}
	if t.count >= t.limit {
		return nil, fmt.Errorf("more than %d entries", t.limit)
	}
	t.count++
	d := t.newDir(baseName(dir), true)
	up.kids[d.e.Name] = d
	return d, nil
}

// remove forgets the node at p and everything beneath it.
func (t *tree) remove(p string, n *node) {
	t.count--
	if n.e.Type == layer.TypeDir {
		for name, k := range n.kids {
			t.remove(p+"/"+name, k)
		}
		return
	}
	ps := slices.DeleteFunc(t.links[n.e.ID], func(q string) bool { return q == p })
	if len(ps) == 0 {
		delete(t.links, n.e.ID)
	} else {
		t.links[n.e.ID] = ps
	}
}

// entry is n as the layer answers it, with its link count as a filesystem
// would report it: 2 plus subdirectories, or one per name of a file.
func (t *tree) entry(n *node) layer.Entry {
	e := n.e
	if e.Type != layer.TypeDir {
		e.Nlink = uint32(max(1, len(t.links[e.ID])))
		return e
	}
	e.Nlink = 2
	for name, k := range n.kids {
		if k.e.Type == layer.TypeDir && visible(name, k) {
			e.Nlink++
		}
	}
	return e
}

// list answers a directory: visible entries, whiteouts and opacity, with
// layer.Classify as the only reader of deletion markers. A name both present
// and whited out in this layer is present.
func (t *tree) list(d *node) layer.Dir {
	out := layer.Dir{Opaque: d.opaque, Entries: make([]layer.Entry, 0, len(d.kids))}
	var white []string
	for name, k := range d.kids {
		switch kind, applies := layer.Classify(name, k.e.Type.Mode(), k.e.Rdev); kind {
		case layer.KindOpaque:
			out.Opaque = true
		case layer.KindWhiteout:
			white = append(white, applies)
		case layer.KindPlain:
			out.Entries = append(out.Entries, t.entry(k))
		}
	}
	for _, w := range white {
		if k := d.kids[w]; (k == nil || !visible(w, k)) && !slices.ContainsFunc(out.Entries, func(e layer.Entry) bool { return e.Name == w }) {
			out.Entries = append(out.Entries, layer.Entry{Name: w, Type: layer.TypeWhiteout})
		}
	}
	slices.SortFunc(out.Entries, func(a, b layer.Entry) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func parentPath(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return ""
}

func baseName(p string) string { return p[strings.LastIndexByte(p, '/')+1:] }

func joinPath(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}
