package lazy

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/containerd/stargz-snapshotter/estargz"
	digest "github.com/opencontainers/go-digest"
)

// lie changes one thing in a real TOC.
type lie struct {
	name   string
	change func(toc *estargz.JTOC, at func(name string) int)
	opts   []Option
}

func chunkOf(toc *estargz.JTOC, at func(string) int, name string, k int) *estargz.TOCEntry {
	return toc.Entries[at(name)+k]
}

var lies = []lie{
	{"absolute name", func(toc *estargz.JTOC, at func(string) int) { toc.Entries[at("dir/small")].Name = "/dir/small" }, nil},
	{"dotdot name", func(toc *estargz.JTOC, at func(string) int) { toc.Entries[at("dir/small")].Name = "../small" }, nil},
	{"dotdot inside", func(toc *estargz.JTOC, at func(string) int) { toc.Entries[at("dir/small")].Name = "dir/../small" }, nil},
	{"unclean name", func(toc *estargz.JTOC, at func(string) int) { toc.Entries[at("dir/small")].Name = "dir//small" }, nil},
	{"dot component", func(toc *estargz.JTOC, at func(string) int) { toc.Entries[at("dir/small")].Name = "./dir/./small" }, nil},
	{"duplicate name", func(toc *estargz.JTOC, at func(string) int) {
		e := *toc.Entries[at("dir/empty")]
		e.Name = "./dir/empty"
		toc.Entries = append(toc.Entries, &e)
	}, nil},
	{"offset past blob", func(toc *estargz.JTOC, at func(string) int) { chunkOf(toc, at, "dir/big", 3).Offset = 1 << 40 }, nil},
	{"negative offset", func(toc *estargz.JTOC, at func(string) int) { chunkOf(toc, at, "dir/big", 1).Offset = -5 }, nil},
	{"negative size", func(toc *estargz.JTOC, at func(string) int) { toc.Entries[at("dir/exact")].Size = -1 }, nil},
	{"size smaller than chunks", func(toc *estargz.JTOC, at func(string) int) { toc.Entries[at("dir/big")].Size = 1500 }, nil},
	{"chunk sizes overlap", func(toc *estargz.JTOC, at func(string) int) { chunkOf(toc, at, "dir/big", 2).ChunkSize++ }, nil},
	{"chunk missing", func(toc *estargz.JTOC, at func(string) int) {
		i := at("dir/big") + 4
		toc.Entries = slices.Delete(toc.Entries, i, i+1)
	}, nil},
	{"chunk after a directory", func(toc *estargz.JTOC, at func(string) int) {
		c := *chunkOf(toc, at, "dir/big", 1)
		toc.Entries = slices.Insert(toc.Entries, at("opq")+1, &c)
	}, nil},
	{"chunk without digest", func(toc *estargz.JTOC, at func(string) int) { chunkOf(toc, at, "dir/big", 2).ChunkDigest = "" }, nil},
	{"chunk bad digest", func(toc *estargz.JTOC, at func(string) int) { chunkOf(toc, at, "dir/big", 2).ChunkDigest = "md5:abc" }, nil},
	{"negative inner offset", func(toc *estargz.JTOC, at func(string) int) { chunkOf(toc, at, "dir/big", 2).InnerOffset = -1 }, nil},
	{"chunk over the limit", func(toc *estargz.JTOC, at func(string) int) {}, []Option{WithMaxChunkSize(999)}},
	{"too many entries", func(toc *estargz.JTOC, at func(string) int) {}, []Option{WithMaxEntries(10)}},
	{"TOC too large", func(toc *estargz.JTOC, at func(string) int) {}, []Option{WithMaxTOCSize(100)}},
	{"hard link cycle", func(toc *estargz.JTOC, at func(string) int) {
		toc.Entries = append(toc.Entries,
			&estargz.TOCEntry{Name: "l1", Type: "hardlink", LinkName: "l2"},
			&estargz.TOCEntry{Name: "l2", Type: "hardlink", LinkName: "l1"})
	}, nil},
	{"hard link to a directory", func(toc *estargz.JTOC, at func(string) int) {
		toc.Entries = append(toc.Entries, &estargz.TOCEntry{Name: "l1", Type: "hardlink", LinkName: "dir"})
	}, nil},
	{"hard link escaping", func(toc *estargz.JTOC, at func(string) int) { toc.Entries[at("dir/hard")].LinkName = "../dir/small" }, nil},
	{"file inside a file", func(toc *estargz.JTOC, at func(string) int) {
		toc.Entries = append(toc.Entries, &estargz.TOCEntry{Name: "dir/small/x", Type: "dir"})
	}, nil},
	{"unknown type", func(toc *estargz.JTOC, at func(string) int) { toc.Entries[at("dev/fifo")].Type = "socket" }, nil},
	{"negative uid", func(toc *estargz.JTOC, at func(string) int) { toc.Entries[at("dev/fifo")].UID = -1 }, nil},
	{"negative device", func(toc *estargz.JTOC, at func(string) int) { toc.Entries[at("dev/null")].DevMajor = -1 }, nil},
	{"NUL in symlink", func(toc *estargz.JTOC, at func(string) int) { toc.Entries[at("dir/link")].LinkName = "a\x00b" }, nil},
	{"root not a directory", func(toc *estargz.JTOC, at func(string) int) {
		toc.Entries = append(toc.Entries, &estargz.TOCEntry{Name: "./", Type: "reg"})
	}, nil},
	{"bad xattr name", func(toc *estargz.JTOC, at func(string) int) {
		toc.Entries[at("dir/exact")].Xattrs = map[string][]byte{"": []byte("x")}
	}, nil},
}

// TestLyingTOC rewrites a real TOC to lie in one way at a time; each lie
// must be refused with ErrInvalidTOC even though the TOC matches its digest.
func TestLyingTOC(t *testing.T) {
	tarData := makeTar(t, fixture(rand.New(rand.NewPCG(1, 2))))
	for _, f := range testFormats {
		b := buildBlob(t, tarData, f.opts)
		payload, tocJSON := splitBlob(t, b.blob, f.opts.zstd)
		for _, l := range lies {
			t.Run(f.name+"/"+l.name, func(t *testing.T) {
				var toc estargz.JTOC
				if err := json.Unmarshal(tocJSON, &toc); err != nil {
					t.Fatal(err)
				}
				l.change(&toc, func(name string) int {
					i := slices.IndexFunc(toc.Entries, func(e *estargz.TOCEntry) bool { return e.Name == name || e.Name == name+"/" })
					if i < 0 {
						t.Fatalf("no entry %q", name)
					}
					return i
				})
				j, _ := json.Marshal(&toc)
				blob := withTOC(payload, j, f.opts.zstd)
				_, err := Open(context.Background(), &memBlob{data: blob}, digest.FromBytes(j), l.opts...)
				if !errors.Is(err, ErrInvalidTOC) {
					t.Errorf("got %v, want ErrInvalidTOC", err)
				}
			})
		}
	}
}

// TestRewrittenTOC checks that the test's TOC writer itself is faithful: an
// unchanged TOC written by it opens and reads.
func TestRewrittenTOC(t *testing.T) {
	tarData := makeTar(t, fixture(rand.New(rand.NewPCG(1, 2))))
	for _, f := range testFormats {
		b := buildBlob(t, tarData, f.opts)
		payload, tocJSON := splitBlob(t, b.blob, f.opts.zstd)
		blob := withTOC(payload, tocJSON, f.opts.zstd)
		l, err := Open(context.Background(), &memBlob{data: blob}, digest.FromBytes(tocJSON))
		if err != nil {
			t.Fatalf("%s: %v", f.name, err)
		}
		checkFixture(t, l)
	}
}

func TestDecodeTOC(t *testing.T) {
	count := func(in string, limit int) (int, error) {
		n := 0
		err := decodeTOC([]byte(in), limit, func(int, *estargz.TOCEntry) error { n++; return nil })
		return n, err
	}
	good := map[string]int{
		`{"version":1,"entries":[{"name":"a","type":"dir"}]}`:            1,
		`{"Entries":[{"name":"a","type":"dir"},{}],"extra":{"x":[1,2]}}`: 2,
		`{}`: 0,
	}
	for in, want := range good {
		if n, err := count(in, 10); err != nil || n != want {
			t.Errorf("decodeTOC(%s) = %d entries, %v", in, n, err)
		}
	}
	for _, in := range []string{``, `[]`, `{"entries":{}}`, `{"entries":[1]}`, `{} {}`, `{"entries":[{},{},{}]}`,
		`{"entries":[],"entries":[]}`} {
		if _, err := count(in, 2); err == nil {
			t.Errorf("decodeTOC(%s) accepted", in)
		}
	}
	// Each entry is decoded afresh: nothing of one (its xattrs) carries over.
	var xattrs []int
	err := decodeTOC([]byte(`{"entries":[{"name":"a","xattrs":{"user.a":"YQ=="}},{"name":"b"}]}`), 10,
		func(_ int, te *estargz.TOCEntry) error { xattrs = append(xattrs, len(te.Xattrs)); return nil })
	if err != nil || !slices.Equal(xattrs, []int{1, 0}) {
		t.Errorf("xattrs per entry %v, %v; want [1 0]", xattrs, err)
	}
}
