package images

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
)

// appVersion names the app layer's content; change it with the content.
const appVersion = "app-v1"

// appMain is /app/main.py: it imports a few stdlib modules and reads its
// data files, so starting it touches a realistic handful of the image's
// files (the interpreter, its shared libraries, some of the stdlib, the
// app) and no others.
const appMain = `#!/usr/bin/env python3
"""strata benchmark app: count the words of the data files."""
import collections
import json
import os
import re
import sys

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def main():
    with open(os.path.join(DATA, "config.json")) as f:
        cfg = json.load(f)
    words = collections.Counter()
    with open(os.path.join(DATA, cfg["corpus"])) as f:
        for line in f:
            words.update(re.findall(r"[a-z]+", line.lower()))
    top = ", ".join(w for w, _ in words.most_common(3))
    print(f"{cfg['name']}: {sum(words.values())} words, top: {top}; python {sys.version.split()[0]}")


main()
`

const appConfig = `{"name": "strata-bench-app", "corpus": "words.txt", "version": 1}
`

// appStep writes /app: main.py, its config and a corpus of words, plus a
// 1 MiB binary asset.
func appStep(ctx context.Context, b *builder) error {
	dir := filepath.Join(b.root, "app", "data")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	files := map[string]string{
		"app/main.py":          appMain,
		"app/data/config.json": appConfig,
		"app/data/words.txt":   corpus(42, 8000),
	}
	for p, content := range files {
		if err := os.WriteFile(filepath.Join(b.root, p), []byte(content), 0o644); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(b.root, "app/main.py"), 0o755); err != nil {
		return err
	}
	return writeDataFile(ctx, filepath.Join(dir, "asset.bin"), 1<<20, 7)
}

// corpus returns lines of pseudo-random words that depend only on seed.
func corpus(seed uint64, lines int) string {
	vocab := strings.Fields(`layer image chunk registry mount union lazy fetch cache digest
		manifest config tar gzip zstd stargz toc whiteout opaque inode kernel fuse page
		read write python debian strata container snapshot blob range`)
	r := rand.New(rand.NewPCG(seed, 1))
	var sb strings.Builder
	for i := range lines {
		fmt.Fprintf(&sb, "%d", i)
		for range 4 + r.IntN(8) {
			sb.WriteByte(' ')
			sb.WriteString(vocab[r.IntN(len(vocab))])
		}
		sb.WriteByte('\n')
	}
	return sb.String()
}
