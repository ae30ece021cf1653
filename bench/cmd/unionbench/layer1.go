package main

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// buildLayer1 makes the upper read-only layer in overlayfs form, the kind
// of change set an image's second layer carries: rewritten files spread
// over the tree, deletions as whiteouts (char device 0/0), one directory
// replaced wholesale (opaque), and a few new files. It makes every union
// do real merging work instead of passing one directory through.
func (t *tree) buildLayer1(files []string) error {
	l0, l1 := t.layer0(), t.layer1()
	if err := os.MkdirAll(l1, 0o755); err != nil {
		return err
	}
	changes := t.Spec.Overrides + t.Spec.Whiteouts
	stride := max(1, len(files)/max(1, changes))
	whiteEvery := max(1, changes/max(1, t.Spec.Whiteouts))
	for k := 0; k < changes && k*stride < len(files); k++ {
		rel := files[k*stride]
		var err error
		if k%whiteEvery == whiteEvery-1 {
			err = whiteout(filepath.Join(l1, rel))
		} else {
			err = override(filepath.Join(l0, rel), filepath.Join(l1, rel))
		}
		if err != nil {
			return err
		}
	}
	if err := t.addOpaqueDir(files[len(files)/3]); err != nil {
		return err
	}
	return addFiles(filepath.Join(l1, "added"), t.Spec.Added)
}

func override(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	info, err := os.Stat(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, append(b, "\n# strata-bench override\n"...), info.Mode().Perm())
}

func whiteout(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := syscall.Mknod(path, syscall.S_IFCHR, 0); err != nil {
		return fmt.Errorf("whiteout %s: %w", path, err)
	}
	return nil
}

// addOpaqueDir hides the lower contents of the directory holding rel.
func (t *tree) addOpaqueDir(rel string) error {
	dir := filepath.Dir(rel)
	path := filepath.Join(t.layer1(), dir)
	if err := os.MkdirAll(path, 0o755); err != nil {
		return err
	}
	if err := syscall.Setxattr(path, "trusted.overlay.opaque", []byte("y"), 0); err != nil {
		return fmt.Errorf("mark %s opaque: %w", path, err)
	}
	t.Stats.OpaqueDir = dir
	return os.WriteFile(filepath.Join(path, "opaque-new.txt"), []byte("only this file\n"), 0o644)
}

func addFiles(dir string, n int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for i := range n {
		name := filepath.Join(dir, fmt.Sprintf("file-%04d.txt", i))
		if err := os.WriteFile(name, fmt.Appendf(nil, "added file %d\n", i), 0o644); err != nil {
			return err
		}
	}
	return nil
}
