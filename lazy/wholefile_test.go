package lazy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/containerd/stargz-snapshotter/estargz"
	digest "github.com/opencontainers/go-digest"
)

// dirFiles is a FileStore of plain files in a directory, checking what it
// is given as the real one (package cache) does.
type dirFiles struct {
	dir  string
	mu   sync.Mutex
	puts int
}

var errMismatch = errors.New("file does not match its digest")

func (s *dirFiles) path(d digest.Digest) string { return filepath.Join(s.dir, d.Encoded()) }

func (s *dirFiles) OpenFile(d digest.Digest) (*os.File, bool) {
	f, err := os.Open(s.path(d))
	return f, err == nil
}

func (s *dirFiles) HasFile(d digest.Digest) bool {
	_, err := os.Stat(s.path(d))
	return err == nil
}

func (s *dirFiles) PutFile(d digest.Digest, size int64, fill func(io.Writer) error) error {
	var buf bytes.Buffer
	if err := fill(&buf); err != nil {
		return err
	}
	if int64(buf.Len()) != size || digest.FromBytes(buf.Bytes()) != d {
		return errMismatch
	}
	s.mu.Lock()
	s.puts++
	s.mu.Unlock()
	return os.WriteFile(s.path(d), buf.Bytes(), 0o444)
}

// waitWhole waits until the layer has assembled n files, or failed to.
func waitWhole(t *testing.T, l *Layer, n int64) Stats {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		s := l.Stats()
		if s.WholePuts+s.FetchErrors >= n {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("no file assembled: %+v", s)
		}
	}
}

// TestWholeFile: a file read in full is kept whole; the next open is that
// file (what unionfs passes through), with no fetch; a small file is not
// kept; a second layer holding the same bytes opens the same whole file
// without fetching anything.
func TestWholeFile(t *testing.T) {
	r := rand.New(rand.NewPCG(41, 42))
	big, small := randBytes(r, 3*WholeFileMin+17), randBytes(r, 1000)
	tarData := makeTar(t, []tarEntry{reg("big", big), reg("small", small)})
	for _, tf := range testFormats {
		t.Run(tf.name, func(t *testing.T) {
			files := &dirFiles{dir: t.TempDir()}
			b := buildBlob(t, tarData, tf.opts)
			l, _ := openBuilt(t, b, WithFileStore(files))
			for p, want := range map[string][]byte{"big": big, "small": small} {
				c, err := l.Open(context.Background(), p)
				if err != nil {
					t.Fatal(err)
				}
				if got, err := io.ReadAll(io.NewSectionReader(c, 0, int64(len(want)))); err != nil || !bytes.Equal(got, want) {
					t.Fatalf("%s: %v or wrong bytes", p, err)
				}
				c.Close()
			}
			if s := waitWhole(t, l, 1); s.WholePuts != 1 || s.FetchErrors != 0 {
				t.Fatalf("%d files assembled, %d errors; want big only", s.WholePuts, s.FetchErrors)
			}
			l2, mb2 := openBuilt(t, b, WithFileStore(files))
			for _, layer := range []*Layer{l, l2} {
				c, err := layer.Open(context.Background(), "big")
				if err != nil {
					t.Fatal(err)
				}
				f, ok := c.(*os.File)
				if !ok {
					t.Fatalf("big opens as %T, want the whole file", c)
				}
				got, _ := io.ReadAll(f)
				f.Close()
				if !bytes.Equal(got, big) {
					t.Error("whole file differs")
				}
			}
			if c, _ := l.Open(context.Background(), "small"); func() bool { _, ok := c.(*os.File); return ok }() {
				t.Error("a small file opens whole")
			}
			opened := int64(2) // footer and TOC
			if n := mb2.reads.Load(); n != opened {
				t.Errorf("second layer made %d reads; want only the %d of opening", n, opened)
			}
		})
	}
}

// TestWholeFileLyingDigest: a TOC whose file digest does not match the
// file's chunks never gets a whole file: the store refuses the assembled
// bytes, and reads go on from the verified chunks.
func TestWholeFileLyingDigest(t *testing.T) {
	r := rand.New(rand.NewPCG(43, 44))
	big := randBytes(r, 2*WholeFileMin)
	tarData := makeTar(t, []tarEntry{reg("big", big)})
	tf := testFormats[1]
	b := buildBlob(t, tarData, tf.opts)
	payload, tocJSON := splitBlob(t, b.blob, tf.opts.zstd)
	var toc estargz.JTOC
	if err := json.Unmarshal(tocJSON, &toc); err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(toc.Entries, func(e *estargz.TOCEntry) bool { return e.Name == "big" })
	toc.Entries[i].Digest = digest.FromString("something else").String()
	j, _ := json.Marshal(&toc)
	files := &dirFiles{dir: t.TempDir()}
	l, err := Open(context.Background(), &memBlob{data: withTOC(payload, j, tf.opts.zstd)}, digest.FromBytes(j), WithFileStore(files))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got := readSequential(t, l, "big", 4096); !bytes.Equal(got, big) {
		t.Fatal("wrong bytes")
	}
	s := waitWhole(t, l, 1)
	if s.WholePuts != 0 || files.puts != 0 {
		t.Errorf("a file whose digest lies was stored whole (%d)", s.WholePuts)
	}
	if c, _ := l.Open(context.Background(), "big"); func() bool { _, ok := c.(*os.File); return ok }() {
		t.Error("it opens whole")
	}
}
