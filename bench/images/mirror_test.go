package images

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/gzip"
)

func TestFindMirror(t *testing.T) {
	cases := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"deb822, security first", map[string]string{"sources.list.d/debian.sources": `Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security bookworm
Components: main

# a comment
Types: deb deb-src
URIs: http://mirror.example/debian/
Suites: bookworm bookworm-updates
Components: main
`}, "http://mirror.example/debian"},
		{"one-line with options", map[string]string{"sources.list": "# deb http://old/ bookworm main\n" +
			"deb-src http://src/ bookworm main\ndeb [arch=amd64 signed-by=/k.gpg] http://one/debian bookworm main\n"}, "http://one/debian"},
		{"disabled stanza", map[string]string{"sources.list.d/x.sources": "Enabled: no\nTypes: deb\nURIs: http://off/\nSuites: bookworm\n\n" +
			"Types: deb\nURIs: http://on/\nSuites: bookworm\n"}, "http://on"},
		{"other suite only", map[string]string{"sources.list": "deb http://x/ bullseye main\n"}, ""},
		{"nothing", map[string]string{}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			for p, content := range c.files {
				write(t, dir, p, content)
			}
			got, err := findMirror(dir, "bookworm")
			if c.want == "" {
				if !errors.Is(err, ErrNoMirror) {
					t.Errorf("findMirror = %q, %v; want ErrNoMirror", got, err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Errorf("findMirror = %q, %v; want %q", got, err, c.want)
			}
		})
	}
}

// TestHostMirror: this machine's apt sources name a bookworm mirror, which
// is what the full build's debootstrap needs.
func TestHostMirror(t *testing.T) {
	m, err := findMirror("/etc/apt", suite)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("mirror: %s", m)
}

// TestDataFile: the data files are exact in size, the same for the same
// seed, different for another, and compress to about half.
func TestDataFile(t *testing.T) {
	dir := t.TempDir()
	const size = 8<<20 + 100 // not a whole number of blocks
	sum := func(name string, seed uint64) ([32]byte, []byte) {
		p := filepath.Join(dir, name)
		must(t, writeDataFile(context.Background(), p, size, seed))
		b, err := os.ReadFile(p)
		must(t, err)
		if len(b) != size {
			t.Fatalf("%s: %d bytes, want %d", name, len(b), size)
		}
		return sha256.Sum256(b), b
	}
	a, data := sum("a", 1)
	if b, _ := sum("b", 1); a != b {
		t.Error("same seed, different data")
	}
	if c, _ := sum("c", 2); a == c {
		t.Error("different seeds, same data")
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, err := zw.Write(data)
	must(t, err)
	must(t, zw.Close())
	if r := float64(buf.Len()) / size; r < 0.4 || r > 0.7 {
		t.Errorf("gzip ratio %.2f, want about 0.5", r)
	}
}
