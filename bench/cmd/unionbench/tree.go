package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/stratafs/strata/bench"
)

// treeVersion changes whenever buildTree would build something different
// for the same spec, so stale caches are rebuilt rather than trusted.
const treeVersion = 1

// maxSourceFile keeps the odd huge library out of layer0: the small-file
// scenarios should measure per-file cost, and the 1 GiB file covers bulk.
const maxSourceFile = 16 << 20

// sourceRoots feed layer0, walked in this order in lexical order.
var sourceRoots = []string{"/usr/share", "/usr/lib"}

// treeSpec decides the cached layers: a stamp with another spec is rebuilt.
type treeSpec struct {
	Version   int   `json:"version"`
	Files     int   `json:"files"`
	BigBytes  int64 `json:"big_bytes"`
	TarFiles  int   `json:"tar_files"`
	Overrides int   `json:"overrides"`
	Whiteouts int   `json:"whiteouts"`
	Added     int   `json:"added"`
}

// treeStats describes what was built, for the report.
type treeStats struct {
	Entries   int    `json:"entries"`
	Files     int    `json:"files"`
	Dirs      int    `json:"dirs"`
	Bytes     int64  `json:"bytes"`
	OpaqueDir string `json:"opaque_dir"`
	TarBytes  int64  `json:"tar_bytes"`
}

// tree is the benchmark's input: two layers and a tarball, built once into
// Dir and reused by every system and every run.
type tree struct {
	Spec  treeSpec  `json:"spec"`
	Stats treeStats `json:"stats"`
	Dir   string    `json:"-"`
}

func (t *tree) layer0() string  { return filepath.Join(t.Dir, "layer0") }
func (t *tree) layer1() string  { return filepath.Join(t.Dir, "layer1") }
func (t *tree) tarball() string { return filepath.Join(t.Dir, "untar.tar") }
func (t *tree) stamp() string   { return filepath.Join(t.Dir, "stamp.json") }

// bigRel is the 1 GiB lower file; its directory is left out of cat-all so
// that scenario stays about many small files.
const bigDir, bigRel = "bench", "bench/big.bin"

// loadOrBuildTree reuses dir when its stamp matches spec and rebuilds it
// otherwise; the stamp is written last, so an interrupted build is redone.
func loadOrBuildTree(ctx context.Context, dir string, spec treeSpec) (*tree, error) {
	t := &tree{Spec: spec, Dir: dir}
	if b, err := os.ReadFile(t.stamp()); err == nil {
		var old tree
		if json.Unmarshal(b, &old) == nil && old.Spec == spec {
			old.Dir = dir
			progress("reusing layers in %s", dir)
			return &old, nil
		}
	}
	progress("building layers in %s (once; reused by later runs)", dir)
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := t.build(ctx); err != nil {
		return nil, fmt.Errorf("build layers in %s: %w", dir, err)
	}
	b, _ := json.MarshalIndent(t, "", "  ")
	return t, os.WriteFile(t.stamp(), b, 0o644)
}

func (t *tree) build(ctx context.Context) error {
	entries, files, err := selectSources(t.Spec.Files)
	if err != nil {
		return err
	}
	if err := t.copyLayer0(ctx, entries); err != nil {
		return err
	}
	if err := writeBigFile(filepath.Join(t.layer0(), bigRel), t.Spec.BigBytes); err != nil {
		return err
	}
	if err := t.buildLayer1(files); err != nil {
		return err
	}
	if err := t.buildTarball(ctx, files); err != nil {
		return err
	}
	t.Stats.Entries, t.Stats.Files, t.Stats.Dirs, t.Stats.Bytes, err = countTree(t.layer0())
	return err
}

// selectSources walks sourceRoots and returns the entries to copy (paths
// relative to /usr, parents before children) and the regular files among
// them, stopping once want regular files are chosen.
func selectSources(want int) (entries, files []string, err error) {
	for _, root := range sourceRoots {
		err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || len(files) >= want {
				return fs.SkipAll
			}
			info, err := d.Info()
			if err != nil || !wanted(info) {
				return nil
			}
			rel, _ := filepath.Rel("/usr", p)
			entries = append(entries, rel)
			if info.Mode().IsRegular() {
				files = append(files, rel)
			}
			return nil
		})
		if err != nil {
			return nil, nil, err
		}
	}
	if len(files) < want {
		return nil, nil, fmt.Errorf("only %d regular files under %s, want %d", len(files), strings.Join(sourceRoots, ", "), want)
	}
	return entries, files, nil
}

func wanted(info fs.FileInfo) bool {
	m := info.Mode()
	return m.IsDir() || m&fs.ModeSymlink != 0 || (m.IsRegular() && info.Size() <= maxSourceFile)
}

func (t *tree) copyLayer0(ctx context.Context, entries []string) error {
	list := filepath.Join(t.Dir, "layer0.list")
	if err := os.WriteFile(list, []byte(strings.Join(entries, "\x00")+"\x00"), 0o644); err != nil {
		return err
	}
	if err := os.MkdirAll(t.layer0(), 0o755); err != nil {
		return err
	}
	progress("copying %d entries from /usr into layer0", len(entries))
	_, err := bench.Shell(ctx, `tar -C /usr --no-recursion --null -T "$1" -cf - | tar -C "$2" -xf -`, list, t.layer0())
	return err
}

// writeBigFile repeats one random MiB: fast to write, and incompressible
// enough that no layer of the stack can cheat on it.
func writeBigFile(path string, size int64) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	block := make([]byte, 1<<20)
	rand.Read(block)
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	for n := int64(0); n < size; n += int64(len(block)) {
		if _, err := f.Write(block[:min(int64(len(block)), size-n)]); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

func (t *tree) buildTarball(ctx context.Context, files []string) error {
	n := min(t.Spec.TarFiles, len(files))
	list := filepath.Join(t.Dir, "untar.list")
	if err := os.WriteFile(list, []byte(strings.Join(files[:n], "\x00")+"\x00"), 0o644); err != nil {
		return err
	}
	if _, err := bench.Time(ctx, "tar", "-C", t.layer0(), "--no-recursion", "--null", "-T", list, "-cf", t.tarball()); err != nil {
		return err
	}
	info, err := os.Stat(t.tarball())
	if err != nil {
		return err
	}
	t.Stats.TarBytes = info.Size()
	return nil
}

func countTree(root string) (entries, files, dirs int, bytes int64, err error) {
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		entries++
		switch {
		case d.IsDir():
			dirs++
		case d.Type().IsRegular():
			files++
			if info, err := d.Info(); err == nil {
				bytes += info.Size()
			}
		}
		return nil
	})
	return entries, files, dirs, bytes, err
}
