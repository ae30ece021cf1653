package images

import (
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
)

// Synthetic images are written by Go alone, with no network and no host
// files, for the scenarios the Debian images cannot serve: one layer,
// the same four formats, cached like the others.
//
//	image          layer                                         for
//	bigfile-1g     /data/big-1g.bin, 1 GiB, half compressible    copy-up of a 1 GiB lower file
//	files-100k     100,000 files of 0–2 KiB under /files/tNN/lNN  memory per 100,000 files
//	files-2k       2,000 files, the same shape                    the same, in the quick suite
//	files-tiny     100 files, the same shape                      the baseline of both
const (
	BigFile    = "bigfile-1g"
	Files100k  = "files-100k"
	Files2k    = "files-2k"
	FilesTiny  = "files-tiny"
	bigFileLen = 1 << 30
	// BigFilePath is the 1 GiB file in BigFile, relative to the root.
	BigFilePath = "data/big-1g.bin"
)

// filesPerDir is how many files share a leaf directory of a files image,
// and dirsPerTop how many leaf directories share a top one: 100,000
// files are 10 top directories of 100 leaves of 100 files.
const (
	filesPerDir = 100
	dirsPerTop  = 100
)

// syntheticRecipes are the synthetic images by name. Their mtimes are all
// imageEpoch (settleTimes), so a build is reproducible to the digest.
func syntheticRecipes() map[string]*recipe {
	rs := map[string]*recipe{
		BigFile: {
			name: BigFile,
			spec: fmt.Sprintf("one file /%s, %d bytes, writeDataFile seed 1001; mtimes %s", BigFilePath, bigFileLen, imageEpoch),
			steps: []step{{name: "data", createdBy: "COPY big-1g.bin /data/", run: func(ctx context.Context, b *builder) error {
				if err := os.MkdirAll(filepath.Join(b.root, "data"), 0o755); err != nil {
					return err
				}
				if err := writeDataFile(ctx, filepath.Join(b.root, BigFilePath), bigFileLen, 1001); err != nil {
					return err
				}
				return settleTimes(b.root)
			}}},
		},
	}
	for name, n := range map[string]int{Files100k: 100_000, Files2k: 2_000, FilesTiny: 100} {
		rs[name] = &recipe{
			name:  name,
			spec:  fmt.Sprintf("%d files of 0-2047 bytes, %d per directory, %d directories per top directory, seed 7; mtimes %s", n, filesPerDir, dirsPerTop, imageEpoch),
			steps: []step{{name: "files", createdBy: fmt.Sprintf("COPY files /files (%d small files)", n), run: manyFilesStep(n)}},
		}
	}
	return rs
}

// BuildSynthetic makes, or finds in the cache, the named synthetic images
// (BigFile, Files100k, Files2k, FilesTiny), in the order given. BigFile
// takes a minute or two the first time (1 GiB written, compressed and
// converted four ways) and keeps about 2.3 GB in the cache.
func BuildSynthetic(ctx context.Context, o Options, names ...string) (*Set, error) {
	all := syntheticRecipes()
	var rs []*recipe
	for _, n := range names {
		r, ok := all[n]
		if !ok {
			return nil, fmt.Errorf("images: no synthetic image %q", n)
		}
		rs = append(rs, r)
	}
	return buildSet(ctx, o, rs)
}

// manyFilesStep writes n small files of deterministic text, 0–2047 bytes
// each, as /files/tTT/lLL/fFF.txt: many small files in nested
// directories, as source trees and language runtimes have them.
func manyFilesStep(n int) func(context.Context, *builder) error {
	return func(ctx context.Context, b *builder) error {
		r := rand.New(rand.NewPCG(7, uint64(n)))
		buf := make([]byte, 2048)
		for i := range n {
			if i%10_000 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			leaf := i / filesPerDir
			dir := filepath.Join(b.root, "files", fmt.Sprintf("t%02d", leaf/dirsPerTop), fmt.Sprintf("l%02d", leaf%dirsPerTop))
			if i%filesPerDir == 0 {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					return err
				}
			}
			size := r.IntN(len(buf))
			for k := range size {
				buf[k] = 'a' + byte(r.IntN(26))
			}
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%02d.txt", i%filesPerDir)), buf[:size], 0o644); err != nil {
				return err
			}
		}
		return settleTimes(b.root)
	}
}

// settleTimes sets every mtime under root to imageEpoch, so that a
// synthetic image depends on its recipe alone: two builds make the same
// blobs and digests.
func settleTimes(root string) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Chtimes(p, imageEpoch, imageEpoch)
	})
}
