package unionfs

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/stratafs/strata/layer"
)

// lowerChild is a name in a merged lower directory: the topmost entry for
// it and, for a directory, every lower layer whose same-named directory
// merges into it (top-down).
type lowerChild struct {
	entry *layer.Entry
	layer int   // index of the layer holding entry
	dirs  []int // directories only: contributing layers, top-down, entry's layer first
	// src is where a file's bytes are when they are not at the child's own
	// path in its layer: a hard link to a file of a layer below.
	src *lowerSrc
}

// lowerSrc is a file's content at another path, in another layer.
type lowerSrc struct {
	layer int
	path  string
}

// content returns where the bytes of the child at path are.
func (c *lowerChild) content(path string) (int, string) {
	if c.src != nil {
		return c.src.layer, c.src.path
	}
	return c.layer, path
}

// lowerListing is the merged content of one directory across the lower
// layers: what the directory shows before the upper directory is applied.
type lowerListing struct {
	names    []string // sorted
	children map[string]lowerChild
}

func (l *lowerListing) get(name string) (lowerChild, bool) {
	if l == nil {
		return lowerChild{}, false
	}
	c, ok := l.children[name]
	return c, ok
}

// mergeLower merges the directory path of the given layers (indices,
// top-down; all of them hold a directory at path). It stops after the first
// opaque directory.
func mergeLower(ctx context.Context, layers []layer.Layer, dirs []int, path string) (*lowerListing, error) {
	ctx = context.WithoutCancel(ctx) // see "Interrupts" in the package doc
	l := &lowerListing{children: map[string]lowerChild{}}
	settled := map[string]bool{} // names whose lower part is decided: a whiteout or a non-dir was met
	for _, li := range dirs {
		d, err := layers[li].ReadDir(ctx, path)
		if err != nil {
			return nil, fmt.Errorf("read %q in layer %d (%s): %w", path, li, layers[li], err)
		}
		for i := range d.Entries {
			mergeEntry(l, settled, li, &d.Entries[i])
		}
		if d.Opaque {
			break
		}
	}
	if err := resolveLowerLinks(ctx, layers, l); err != nil {
		return nil, fmt.Errorf("read %q: %w", path, err)
	}
	l.names = make([]string, 0, len(l.children))
	for name := range l.children {
		l.names = append(l.names, name)
	}
	sort.Strings(l.names)
	return l, nil
}

// mergeEntry applies one entry of a lower layer beneath everything merged so far.
func mergeEntry(l *lowerListing, settled map[string]bool, li int, e *layer.Entry) {
	if settled[e.Name] {
		return
	}
	c, seen := l.children[e.Name]
	switch {
	case !seen && e.Type == layer.TypeWhiteout:
		settled[e.Name] = true
	case !seen && e.Type == layer.TypeDir:
		l.children[e.Name] = lowerChild{entry: e, layer: li, dirs: []int{li}}
	case !seen:
		l.children[e.Name] = lowerChild{entry: e, layer: li}
		settled[e.Name] = true
	case e.Type == layer.TypeDir: // seen, so a directory above: merge
		c.dirs = append(c.dirs, li)
		if c.entry.Implied {
			c.entry = inherit(c.entry, e)
		}
		l.children[e.Name] = c
	default: // a whiteout or a non-dir under a directory ends its merge
		settled[e.Name] = true
	}
}

// resolveLowerLinks replaces each hard link to a file of a layer below
// (layer.TypeLowerLink) with that file as the layers below show it: its
// attributes and bytes under the link's name. The link keeps its own
// identity, so it is its own inode: overlayfs would have copied the target
// up into the link's layer, which gives the same bytes. A link whose target
// the layers below do not show as a regular file is left out, as a broken
// link cannot be extracted either.
func resolveLowerLinks(ctx context.Context, layers []layer.Layer, l *lowerListing) error {
	for name, c := range l.children {
		if c.entry.Type != layer.TypeLowerLink {
			continue
		}
		t, ok, err := lookupBelow(ctx, layers, c.layer, c.entry.Target)
		if err != nil {
			return fmt.Errorf("hard link %q to %q: %w", name, c.entry.Target, err)
		}
		if !ok || t.entry.Type != layer.TypeReg {
			delete(l.children, name)
			continue
		}
		e := *t.entry
		e.Name, e.ID = c.entry.Name, c.entry.ID
		src := t.src
		if src == nil {
			src = &lowerSrc{layer: t.layer, path: c.entry.Target}
		}
		l.children[name] = lowerChild{entry: &e, layer: c.layer, src: src}
	}
	return nil
}

// lookupBelow finds path in the merged view of the layers below layer li.
// A lower link found there is resolved already, in layers further down, so
// chains end.
func lookupBelow(ctx context.Context, layers []layer.Layer, li int, path string) (lowerChild, bool, error) {
	dirs := make([]int, 0, li)
	for i := li - 1; i >= 0; i-- {
		dirs = append(dirs, i)
	}
	dir := ""
	for {
		name, rest, deeper := strings.Cut(path, "/")
		if len(dirs) == 0 {
			return lowerChild{}, false, nil
		}
		l, err := mergeLower(ctx, layers, dirs, dir)
		if err != nil {
			return lowerChild{}, false, err
		}
		c, ok := l.get(name)
		if !deeper || !ok {
			return c, ok, nil
		}
		if c.entry.Type != layer.TypeDir {
			return lowerChild{}, false, nil
		}
		dirs, dir, path = c.dirs, joinPath(dir, name), rest
	}
}

// inherit returns the implied directory top with the attributes of the
// directory below it, and keeps top's identity: extracting the layers in
// order would have left the lower directory's attributes in place. While
// below is implied too, the next layer down may still give them.
func inherit(top, below *layer.Entry) *layer.Entry {
	e := *below
	e.Name, e.ID, e.Nlink = top.Name, top.ID, top.Nlink
	return &e
}

// openLower opens a lower file. Like mergeLower it does not let a FUSE
// interrupt abort it (see "Interrupts" in the package doc).
func (u *union) openLower(ctx context.Context, li int, path string) (layer.Content, error) {
	return u.layers[li].Open(context.WithoutCancel(ctx), path)
}
