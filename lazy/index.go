package lazy

import (
	"fmt"
	"path"
	"slices"
	"strings"
	"syscall"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/stratafs/strata/layer"
)

// node is one path of the layer: an entry of the TOC, a hard link to one, or
// a directory implied by deeper entries.
type node struct {
	e       layer.Entry // Name is the base name; Nlink is final after build
	implied bool        // created for a deeper entry, not named in the TOC
	link    string      // a hard link's target path, until resolved
	file    *fileData   // regular files; shared by hard links
	kids    []*node     // directories: every child while building, then (link) the visible ones, sorted by name
	white   []string    // directories: names whited out here
	opaque  bool        // directories: hides the layers below
}

// index is a layer's tree, built once from the TOC and never changed.
type index struct {
	nodes map[string]*node
	links map[uint64][]string // ID -> every visible path of a hard-linked file
	order []*chunk            // every file's chunks, in blob order
	// landmark is where eStargz's .prefetch.landmark lies in the blob: the
	// files before it are the ones the image's builder marked as read at
	// start. -1 when the layer has none.
	landmark int64
	// xattrs: some entry carries an extended attribute.
	xattrs bool
}

// builder turns TOC entries into an index, refusing any TOC that could not
// have come from a real tar.
type builder struct {
	idx      index
	limit    int
	nextID   uint64
	payload  int64 // end of the chunk data in the blob
	maxChunk int64
	cur      *node  // the regular file that "chunk" entries continue
	curSum   string // its whole-file digest, for a file of one chunk
	files    []*fileData
	linked   map[uint64]bool // IDs that hard links share
}

func buildIndex(t *loadedTOC, o *options) (*index, error) {
	b := &builder{
		idx:      index{nodes: map[string]*node{}, links: map[uint64][]string{}},
		limit:    o.maxEntries,
		payload:  t.payloadEnd,
		maxChunk: o.maxChunkSize,
		linked:   map[uint64]bool{},
	}
	if _, err := b.dir(nil, ""); err != nil { // the root exists even when the TOC does not name it
		return nil, err
	}
	decode := decodeTOC
	if len(t.json) >= pipelineMin {
		decode = decodeInto
	}
	err := decode(t.json, o.maxEntries, func(i int, te *estargz.TOCEntry) error {
		if err := b.add(te); err != nil {
			return fmt.Errorf("entry %d (%q): %w", i, te.Name, err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidTOC, err)
	}
	for _, step := range []func() error{b.endFile, b.resolveLinks} {
		if err := step(); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidTOC, err)
		}
	}
	setChunkEnds(b.files, b.payload)
	b.idx.order = blobOrder(b.files)
	b.idx.landmark = b.landmarkOffset()
	b.link()
	b.count()
	return &b.idx, nil
}

// cleanName turns a tar name ("./usr/bin/", "etc/passwd") into a layer path,
// refusing absolute, unclean and escaping names rather than repairing them.
func cleanName(raw string) (string, error) {
	if raw == "" || raw == "/" || raw == "." || raw == "./" {
		return "", nil
	}
	p := strings.TrimSuffix(strings.TrimPrefix(raw, "./"), "/")
	if p == "" || len(p) >= syscall.PathMax || !layer.ValidPath(p) {
		return "", fmt.Errorf("name %q is not a clean relative path", raw)
	}
	return p, nil
}

func (b *builder) add(te *estargz.TOCEntry) error {
	if te.Type == "chunk" {
		return b.addChunk(te)
	}
	if err := b.endFile(); err != nil {
		return err
	}
	p, err := cleanName(te.Name)
	if err != nil {
		return err
	}
	e, opaque, err := entryOf(te)
	if err != nil {
		return err
	}
	e.Name = path.Base(p)
	if p == "" {
		e.Name = ""
	}
	b.idx.xattrs = b.idx.xattrs || len(e.Xattrs) > 0
	n, err := b.put(p, e, te.Type)
	if err != nil {
		return err
	}
	n.opaque = opaque
	switch te.Type {
	case "hardlink":
		if n.link, err = cleanName(te.LinkName); err != nil || n.link == "" {
			return fmt.Errorf("hard link target %q is not a clean relative path", te.LinkName)
		}
	case "reg":
		n.file = &fileData{size: e.Size}
		b.files = append(b.files, n.file)
		b.cur, b.curSum = n, te.Digest
		if e.Size > 0 {
			return b.addChunk(te)
		}
	}
	return nil
}

// put records the entry e at p. An explicit directory may take over a
// directory implied earlier; any other second use of a path is refused.
func (b *builder) put(p string, e layer.Entry, typ string) (*node, error) {
	if old, ok := b.idx.nodes[p]; ok {
		if !old.implied || typ != "dir" {
			return nil, fmt.Errorf("duplicate name %q", p)
		}
		e.ID = old.e.ID
		old.e, old.implied = e, false
		return old, nil
	}
	var parent *node
	if p != "" {
		var err error
		if parent, err = b.parentDir(p); err != nil {
			return nil, err
		}
	}
	return b.newNode(parent, p, e)
}

// newNode adds the node for path p to the index and to its parent's
// children (nil for the root).
func (b *builder) newNode(parent *node, p string, e layer.Entry) (*node, error) {
	if len(b.idx.nodes) >= b.limit {
		return nil, fmt.Errorf("more than %d entries", b.limit)
	}
	b.nextID++
	e.ID = b.nextID
	n := &node{e: e}
	b.idx.nodes[p] = n
	if parent != nil {
		parent.kids = append(parent.kids, n)
	}
	return n, nil
}

// parentDir returns the directory holding p, implying it (and its own
// parents) when the TOC has not named it yet.
func (b *builder) parentDir(p string) (*node, error) {
	dir := parentPath(p)
	if n, ok := b.idx.nodes[dir]; ok {
		if n.e.Type != layer.TypeDir {
			return nil, fmt.Errorf("%q is inside %q, which is not a directory", p, dir)
		}
		return n, nil
	}
	parent, err := b.parentDir(dir)
	if err != nil {
		return nil, err
	}
	return b.dir(parent, dir)
}

func parentPath(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return ""
}

// dir implies the directory p with the attributes of a directory that no
// tar entry describes: 0755, owned by root, time 0.
func (b *builder) dir(parent *node, p string) (*node, error) {
	name := path.Base(p)
	if p == "" {
		name = ""
	}
	n, err := b.newNode(parent, p, layer.Entry{Name: name, Type: layer.TypeDir, Perm: 0o755, Nlink: 2, Implied: true})
	if err != nil {
		return nil, err
	}
	n.implied = true
	return n, nil
}

// resolveLinks makes every hard link share its target's identity, data and
// attributes. Targets are followed through chains of links; cycles and links
// to directories are refused.
func (b *builder) resolveLinks() error {
	for p, n := range b.idx.nodes {
		if n.link != "" {
			if err := b.resolve(p, n, 0); err != nil {
				return err
			}
		}
	}
	return nil
}

// resolve makes the hard link n (at p) the file it names. A target that is
// not in this layer is in a layer below: n becomes a TypeLowerLink that the
// union resolves.
func (b *builder) resolve(p string, n *node, depth int) error {
	t, ok := b.idx.nodes[n.link]
	if !ok {
		n.e.Type, n.e.Target, n.link = layer.TypeLowerLink, n.link, ""
		return nil
	}
	if t.e.Type == layer.TypeDir || t == n || depth > maxLinkChain {
		return fmt.Errorf("hard link %q: target %q is a directory or a cycle", p, n.link)
	}
	if t.link != "" {
		if err := b.resolve(n.link, t, depth+1); err != nil {
			return err
		}
	}
	name := n.e.Name
	n.e, n.file, n.link = t.e, t.file, ""
	n.e.Name = name
	b.linked[t.e.ID] = true
	return nil
}

// link fills each directory with its visible children: an entry is visible
// when layer.Classify calls it plain and its directory is visible.
// Whiteouts and opaque markers are read here, and nowhere else.
func (b *builder) link() {
	var walk func(d *node)
	walk = func(d *node) {
		all := d.kids
		d.kids = all[:0] // the visible ones, kept in place: never ahead of all's reading
		for _, n := range all {
			if d == b.idx.nodes[""] && isLandmark(n) {
				continue
			}
			kind, name := layer.Classify(n.e.Name, n.e.Type.Mode(), n.e.Rdev)
			switch kind {
			case layer.KindOpaque:
				d.opaque = true
			case layer.KindWhiteout:
				d.white = append(d.white, name)
			case layer.KindPlain:
				d.kids = append(d.kids, n)
				if n.e.Type == layer.TypeDir {
					walk(n)
				}
			}
		}
		slices.SortFunc(d.kids, func(a, c *node) int { return strings.Compare(a.e.Name, c.e.Name) })
		slices.Sort(d.white)
		d.white = slices.Compact(d.white)
	}
	walk(b.idx.nodes[""])
}

// count sets link counts as a filesystem would report them: a directory has
// 2 plus its subdirectories, a file one per visible name. Hard-linked files
// are indexed for Links; only their paths are gathered, the rest of the
// files have one name.
func (b *builder) count() {
	names := map[uint64][]string{}
	var walk func(d *node, dp string)
	walk = func(d *node, dp string) {
		d.e.Nlink = 2
		for _, n := range d.kids {
			switch {
			case n.e.Type == layer.TypeDir:
				d.e.Nlink++
				walk(n, joinPath(dp, n.e.Name))
			case b.linked[n.e.ID]:
				names[n.e.ID] = append(names[n.e.ID], joinPath(dp, n.e.Name))
			default:
				n.e.Nlink = 1
			}
		}
	}
	walk(b.idx.nodes[""], "")
	for id, ps := range names {
		for _, p := range ps {
			b.idx.nodes[p].e.Nlink = uint32(len(ps))
		}
		if len(ps) > 1 {
			b.idx.links[id] = ps
		}
	}
}

func joinPath(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// maxLinkChain bounds a chain of hard links naming hard links; tar writers
// name the first path of a file, so real chains have length 1.
const maxLinkChain = 64

// landmarkOffset finds the prefetch landmark in the root, if any.
func (b *builder) landmarkOffset() int64 {
	n, ok := b.idx.nodes[estargz.PrefetchLandmark]
	if !ok || !isLandmark(n) || n.file == nil || len(n.file.chunks) == 0 {
		return -1
	}
	return n.file.chunks[0].cOff
}

// isLandmark reports an eStargz prefetch landmark, a file the format puts
// in the root that is not part of the image (stargz-snapshotter and
// containers/storage hide it too).
func isLandmark(n *node) bool {
	return n.e.Type == layer.TypeReg && (n.e.Name == estargz.PrefetchLandmark || n.e.Name == estargz.NoPrefetchLandmark)
}
