package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// recipeVersion is mixed into every recipe hash: bump it when the code
// that turns a recipe into layers changes (the diff, the tar writer, the
// packing), so cached images built the old way are rebuilt.
const recipeVersion = "strata-bench-images-v1"

// recipe is how one image is built: an optional parent image whose layers
// come first, then one layer per step, each the diff of the rootfs before
// and after the step.
type recipe struct {
	name   string
	parent string // an image of the same Set built before this one, or ""
	// spec names everything the steps do (package lists, sizes, seeds,
	// host files); its hash decides whether the cache is stale.
	spec     string
	steps    []step
	config   imageConfig
	keepTree bool
}

type step struct {
	name      string // the layer's name
	createdBy string // the config history's created_by
	run       func(ctx context.Context, b *builder) error
}

// imageConfig is what the image's config says about running it.
type imageConfig struct {
	cmd        []string
	env        []string
	workingDir string
}

// builder is the state a step works on.
type builder struct {
	o    *Options
	log  logger
	root string // the rootfs, absolute
	work string // scratch space: layer tars, logs
}

// logPath is the log file of a step's commands.
func (b *builder) logPath(name string) string { return filepath.Join(b.work, name+".log") }

func (r *recipe) hash(parent *Image) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s\n%q\n", recipeVersion, r.name, r.spec, r.config)
	for _, s := range r.steps {
		fmt.Fprintf(h, "step %s %s\n", s.name, s.createdBy)
	}
	if parent != nil {
		fmt.Fprintf(h, "parent %s\n", parent.Recipe)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// Files in an image's cache directory. recipeFile is written last, so an
// interrupted build is never mistaken for a finished one.
const (
	recipeFile = "RECIPE"
	imageFile  = "image.json"
	layoutDir  = "oci"
	treeDir    = "rootfs"
)

// buildImage returns the cached image if its recipe is unchanged, else
// builds it: rootfs, layer tars, then the layout in every format.
func buildImage(ctx context.Context, o *Options, r *recipe, parent *Image) (*Image, error) {
	dir := filepath.Join(o.CacheDir, r.name)
	hash := r.hash(parent)
	log := logger{o.Progress}
	if im, err := cached(dir, hash); err == nil && !o.Rebuild {
		log.printf("%s: cached in %s (recipe %s)", r.name, dir, hash)
		return im, nil
	}
	log.printf("%s: building (recipe %s) in %s", r.name, hash, dir)
	start := time.Now()
	if err := resetDir(dir); err != nil {
		return nil, err
	}
	b := &builder{o: o, log: log, work: filepath.Join(o.CacheDir, "work", r.name)}
	b.root = filepath.Join(b.work, treeDir)
	if err := resetDir(b.work); err != nil {
		return nil, err
	}
	if err := os.Mkdir(b.root, 0o755); err != nil {
		return nil, err
	}
	im := &Image{Name: r.name, Recipe: hash, Layout: filepath.Join(dir, layoutDir), StepSeconds: map[string]float64{}}
	tars, err := runSteps(ctx, b, r, parent, im)
	if err != nil {
		return nil, err
	}
	if err := pack(ctx, b, r, parent, im, tars); err != nil {
		return nil, err
	}
	if r.keepTree {
		im.Tree = filepath.Join(dir, treeDir)
		if err := os.Rename(b.root, im.Tree); err != nil {
			return nil, err
		}
	}
	im.BuiltAt, im.BuildSeconds = time.Now().UTC(), time.Since(start).Seconds()
	if err := saveImage(dir, im); err != nil {
		return nil, err
	}
	log.printf("%s: built in %.0f s", r.name, im.BuildSeconds)
	return im, os.RemoveAll(b.work)
}

// runSteps fills the rootfs (the parent's layers first) and cuts one layer
// tar per step; it returns the tars' paths and sets im's tree figures.
func runSteps(ctx context.Context, b *builder, r *recipe, parent *Image, im *Image) ([]string, error) {
	before := snapshot{}
	if parent != nil {
		t := time.Now()
		if err := extractImage(ctx, parent.Variant(Gzip).Location, b.root); err != nil {
			return nil, fmt.Errorf("unpack parent %s: %w", parent.Name, err)
		}
		im.StepSeconds["unpack:"+parent.Name] = time.Since(t).Seconds()
		var err error
		if before, err = takeSnapshot(b.root); err != nil {
			return nil, err
		}
	}
	var tars []string
	for i, s := range r.steps {
		b.log.printf("%s: step %d/%d %s", r.name, i+1, len(r.steps), s.name)
		t := time.Now()
		if err := s.run(ctx, b); err != nil {
			return nil, fmt.Errorf("step %s: %w", s.name, err)
		}
		after, err := takeSnapshot(b.root)
		if err != nil {
			return nil, err
		}
		out := filepath.Join(b.work, fmt.Sprintf("%d-%s.tar", i, s.name))
		info, err := writeLayer(ctx, b.root, diffTrees(before, after), out)
		if err != nil {
			return nil, err
		}
		info.Name, info.CreatedBy = s.name, s.createdBy
		im.Layers = append(im.Layers, info)
		im.StepSeconds[s.name] = time.Since(t).Seconds()
		b.log.printf("%s: layer %s: %d entries (%d whiteouts), %.1f MB tar, %.0f s",
			r.name, s.name, info.Entries, info.Whiteouts, float64(info.TarBytes)/1e6, im.StepSeconds[s.name])
		tars, before = append(tars, out), after
	}
	im.Entries, im.Files, im.UnpackedBytes = treeFigures(before)
	if parent != nil {
		im.Layers = append(append([]LayerInfo(nil), parent.Layers...), im.Layers...)
	}
	return tars, nil
}

// treeFigures counts a tree's entries and regular files, and the bytes of
// its distinct regular files.
func treeFigures(s snapshot) (entries, files int, bytes int64) {
	seen := map[[2]uint64]bool{}
	for _, st := range s {
		entries++
		if st.mode&syscall.S_IFMT != syscall.S_IFREG {
			continue
		}
		files++
		if k := [2]uint64{st.dev, st.ino}; !seen[k] {
			seen[k] = true
			bytes += st.size
		}
	}
	return entries, files, bytes
}

// cached loads the image kept in dir if it was built by the recipe hash
// and its layout is still there.
func cached(dir, hash string) (*Image, error) {
	b, err := os.ReadFile(filepath.Join(dir, recipeFile))
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(string(b)) != hash {
		return nil, fmt.Errorf("recipe changed")
	}
	j, err := os.ReadFile(filepath.Join(dir, imageFile))
	if err != nil {
		return nil, err
	}
	var im Image
	if err := json.Unmarshal(j, &im); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(im.Layout, "index.json")); err != nil {
		return nil, err
	}
	return &im, nil
}

func saveImage(dir string, im *Image) error {
	j, err := json.MarshalIndent(im, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, imageFile), append(j, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, recipeFile), []byte(im.Recipe+"\n"), 0o644)
}

// resetDir empties dir, creating it if needed.
func resetDir(dir string) error {
	if err := os.RemoveAll(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return os.MkdirAll(dir, 0o755)
}
