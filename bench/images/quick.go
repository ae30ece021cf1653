package images

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// hostPython is the Debian interpreter the quick image is made of (not a
// pyenv or venv one earlier on PATH: those live outside /usr).
const hostPython = "/usr/bin/python3"

// quickStdlib are the stdlib packages copied besides every top-level
// module and lib-dynload: enough for site.py and /app/main.py.
var quickStdlib = []string{"collections", "encodings", "importlib", "json", "logging", "re"}

// quickRecipe builds "quick" from the host's python3. The steps also make
// each kind of change a layer can carry, so that a test of the layers
// sees them all: a whiteout of a file and of a whole directory, a
// directory replaced by a file, a changed mode, hard links, symlinks,
// character devices and an extended attribute.
func quickRecipe() (*recipe, error) {
	if _, err := os.Stat(hostPython); err != nil {
		return nil, fmt.Errorf("images: quick image: %w: %s (apt-get install python3): %v", ErrNoTool, hostPython, err)
	}
	bin, err := filepath.EvalSymlinks(hostPython)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(bin)
	if err != nil {
		return nil, err
	}
	return &recipe{
		name: "quick",
		// The content comes from the host: a new python build rebuilds it.
		spec:     fmt.Sprintf("host %s %d %d; stdlib %v; %s", bin, fi.Size(), fi.ModTime().UnixNano(), quickStdlib, appVersion),
		config:   pythonConfig,
		keepTree: true,
		steps: []step{
			{name: "base", createdBy: "host python3, its libraries, /etc, /dev", run: quickBase},
			{name: "python", createdBy: "host python3 stdlib (subset)", run: quickStdlibStep},
			{name: "app", createdBy: "COPY app /app", run: appStep},
		},
	}, nil
}

// quickBase lays out a merged-/usr root with the interpreter, every
// library ldd names for it, and a few files the next layer changes.
func quickBase(ctx context.Context, b *builder) error {
	r := b.root
	for _, d := range []string{"etc", "root", "dev", "usr/bin", "usr/lib", "usr/share/quick/old", "usr/share/quick/swap"} {
		if err := os.MkdirAll(filepath.Join(r, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Mkdir(filepath.Join(r, "tmp"), 0o700); err != nil {
		return err
	}
	if err := os.Chmod(filepath.Join(r, "tmp"), os.ModeSticky|0o777); err != nil {
		return err
	}
	if err := copyHostPath(r, hostPython); err != nil {
		return err
	}
	libs, err := lddPaths(ctx, hostPython)
	if err != nil {
		return err
	}
	for _, l := range libs {
		if err := copyHostPath(r, l); err != nil {
			return err
		}
	}
	for _, d := range []struct {
		name         string
		major, minor uint32
	}{{"null", 1, 3}, {"zero", 1, 5}} {
		if err := unix.Mknod(filepath.Join(r, "dev", d.name), unix.S_IFCHR|0o666, int(unix.Mkdev(d.major, d.minor))); err != nil {
			return fmt.Errorf("mknod /dev/%s: %w", d.name, err)
		}
	}
	return writeQuickFiles(r)
}

// writeQuickFiles writes /etc and /usr/share/quick: a hard-linked pair,
// a file with an xattr, and entries the python step deletes or replaces.
func writeQuickFiles(r string) error {
	files := map[string]string{
		"etc/passwd":                "root:x:0:0:root:/root:/bin/sh\n",
		"etc/group":                 "root:x:0:\n",
		"etc/motd":                  "deleted by the next layer\n",
		"usr/share/quick/hello.txt": "hello from the base layer\n",
		"usr/share/quick/old/a":     "a\n",
		"usr/share/quick/old/b":     "b\n",
		"usr/share/quick/swap/c":    "c\n",
		"usr/share/quick/mode.sh":   "#!/bin/sh\necho mode\n",
	}
	for p, c := range files {
		if err := os.WriteFile(filepath.Join(r, p), []byte(c), 0o644); err != nil {
			return err
		}
	}
	if err := os.Link(filepath.Join(r, "usr/share/quick/hello.txt"), filepath.Join(r, "usr/share/quick/hello-link.txt")); err != nil {
		return err
	}
	if err := unix.Lsetxattr(filepath.Join(r, "usr/share/quick/hello.txt"), "user.strata.note", []byte("quick"), 0); err != nil {
		return fmt.Errorf("setxattr (the cache file system needs user xattrs): %w", err)
	}
	return os.Symlink("hello.txt", filepath.Join(r, "usr/share/quick/hello-sym.txt"))
}

// quickStdlibStep copies the stdlib subset and changes the base layer's
// files, so the layer has whiteouts, a type change and a mode change.
func quickStdlibStep(ctx context.Context, b *builder) error {
	r := b.root
	stdlib, err := hostOutput(ctx, hostPython, "-c", "import sysconfig; print(sysconfig.get_paths()['stdlib'])")
	if err != nil {
		return err
	}
	stdlib = strings.TrimSpace(stdlib)
	if err := copyStdlib(r, stdlib); err != nil {
		return err
	}
	q := filepath.Join(r, "usr/share/quick")
	for _, p := range []string{filepath.Join(r, "etc/motd"), filepath.Join(q, "old"), filepath.Join(q, "swap")} {
		if err := os.RemoveAll(p); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(q, "swap"), []byte("a file where a directory was\n"), 0o644); err != nil {
		return err
	}
	if err := os.Chmod(filepath.Join(q, "mode.sh"), 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(r, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/app:/bin/sh\n"), 0o644)
}

// copyStdlib copies the top-level modules, lib-dynload and quickStdlib
// packages of the stdlib directory (no tests, no __pycache__).
func copyStdlib(root, stdlib string) error {
	ents, err := os.ReadDir(stdlib)
	if err != nil {
		return err
	}
	for _, e := range ents {
		keep := (e.Type().IsRegular() && strings.HasSuffix(e.Name(), ".py")) ||
			(e.IsDir() && (e.Name() == "lib-dynload" || slices.Contains(quickStdlib, e.Name())))
		if !keep {
			continue
		}
		if err := copyHostTree(root, filepath.Join(stdlib, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// copyHostTree copies a host file or directory tree to the same path
// under root, leaving out __pycache__ and test directories.
func copyHostTree(root, src string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "__pycache__" || d.Name() == "test" || d.Name() == "tests") {
			return filepath.SkipDir
		}
		return copyHostPath(root, p)
	})
}

// lddPaths returns the shared libraries and the loader ldd names for bin.
func lddPaths(ctx context.Context, bin string) ([]string, error) {
	out, err := hostOutput(ctx, "ldd", bin)
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			paths = append(paths, f[2])
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			paths = append(paths, f[0])
		}
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("%w: ldd %s named no library", ErrBuild, bin)
	}
	return paths, nil
}

// copyHostPath makes the absolute host path p resolve under root as it
// does on the host: each symlink on the way is copied as a symlink (and
// followed), each directory made, and the final file copied with its
// mode. Entries already under root are kept.
func copyHostPath(root, p string) error {
	return copyResolving(root, "/", strings.Split(strings.Trim(path.Clean(p), "/"), "/"), 0)
}

func copyResolving(root, dir string, rest []string, depth int) error {
	if depth > 40 {
		return fmt.Errorf("%w: too many symlinks resolving %s", ErrBuild, path.Join(dir, path.Join(rest...)))
	}
	for i, c := range rest {
		host := path.Join(dir, c)
		fi, err := os.Lstat(host)
		if err != nil {
			return err
		}
		dst := filepath.Join(root, host)
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(host)
			if err != nil {
				return err
			}
			if err := os.Symlink(target, dst); err != nil && !os.IsExist(err) {
				return err
			}
			if !path.IsAbs(target) {
				target = path.Join(dir, target)
			}
			next := strings.Split(strings.Trim(path.Clean(target), "/"), "/")
			return copyResolving(root, "/", append(next, rest[i+1:]...), depth+1)
		case fi.IsDir():
			if err := os.Mkdir(dst, fi.Mode().Perm()); err != nil && !os.IsExist(err) {
				return err
			}
			dir = host
		default:
			return copyRegular(host, dst, fi.Mode().Perm())
		}
	}
	return nil
}

func copyRegular(src, dst string, mode fs.FileMode) error {
	if _, err := os.Lstat(dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chmod(dst, mode)
}
