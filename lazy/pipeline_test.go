package lazy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/stargz-snapshotter/estargz"
)

// bigTOC returns the JSON of a TOC of n regular files, the entry at bad
// (if in range) malformed.
func bigTOC(n, bad int) []byte {
	var sb strings.Builder
	sb.WriteString(`{"version":1,"entries":[`)
	for i := range n {
		if i > 0 {
			sb.WriteString(",")
		}
		if i == bad {
			sb.WriteString(`{"name":`)
			continue
		}
		fmt.Fprintf(&sb, `{"name":"d/f%05d","type":"reg","size":0,"modtime":"2026-11-23T00:00:00Z","mode":420,"xattrs":{"user.i":"%s"}}`,
			i, "MTIz")
	}
	sb.WriteString("]}")
	return []byte(sb.String())
}

type seen struct {
	i      int
	name   string
	xattrs int
}

func collect(decode func([]byte, int, func(int, *estargz.TOCEntry) error) error, data []byte, limit, failAt int) ([]seen, error) {
	var got []seen
	err := decode(data, limit, func(i int, te *estargz.TOCEntry) error {
		if i == failAt {
			return fmt.Errorf("entry %d refused", i)
		}
		got = append(got, seen{i, te.Name, len(te.Xattrs)})
		return nil
	})
	return got, err
}

// TestDecodeInto: the pipelined decoder hands the builder the entries the
// plain one does, in order, and ends as it does: at the builder's error,
// the decoder's, or the entry limit, with no goroutine left behind (the
// package's TestMain checks).
func TestDecodeInto(t *testing.T) {
	const n = 3000 // a dozen batches
	good := bigTOC(n, -1)
	if len(good) < pipelineMin {
		t.Fatalf("test TOC of %d bytes is below the pipeline's %d", len(good), pipelineMin)
	}
	for _, c := range []struct {
		name          string
		data          []byte
		limit, failAt int
	}{
		{"all", good, n, -1},
		{"builder fails", good, n, 1000},
		{"builder fails on the last", good, n, n - 1},
		{"decoder fails", bigTOC(n, 2000), n, -1},
		{"builder fails before the decoder", bigTOC(n, 2000), n, 1500},
		{"over the limit", good, n - 1, -1},
	} {
		want, wantErr := collect(decodeTOC, c.data, c.limit, c.failAt)
		got, err := collect(decodeInto, c.data, c.limit, c.failAt)
		if (err == nil) != (wantErr == nil) || err != nil && err.Error() != wantErr.Error() {
			t.Errorf("%s: error %v, want %v", c.name, err, wantErr)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: %d entries handed over, want %d", c.name, len(got), len(want))
		}
		if c.failAt < 0 && c.limit == n && len(c.data) == len(good) && (len(got) != n || got[n-1].xattrs != 1) {
			t.Errorf("%s: %d entries, last %+v", c.name, len(got), got[len(got)-1])
		}
	}
	if _, err := collect(decodeInto, good, n, 10); err == nil || errors.Is(err, errBuilderStopped) {
		t.Errorf("a builder's error came back as %v", err)
	}
}

// FuzzDecodeInto checks the pipelined decoder against the plain one on
// any input: the same entries in the same order, the same error, a
// builder that fails at any entry included.
func FuzzDecodeInto(f *testing.F) {
	f.Add(bigTOC(600, -1), 2000, 300)
	f.Add(bigTOC(600, 400), 2000, -1)
	f.Add([]byte(`{"entries":[{"name":"a"},{"name":"b"}],"version":1}`), 1, -1)
	f.Add([]byte(`{"Entries":[{"name":"a","xattrs":{"k":"dg=="}}],"entries":[]}`), 10, -1)
	f.Fuzz(func(t *testing.T, data []byte, limit, failAt int) {
		limit = max(1, limit%5000)
		want, wantErr := collect(decodeTOC, data, limit, failAt)
		got, err := collect(decodeInto, data, limit, failAt)
		if (err == nil) != (wantErr == nil) || err != nil && err.Error() != wantErr.Error() {
			t.Fatalf("error %v, want %v", err, wantErr)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%d entries handed over, want %d", len(got), len(want))
		}
	})
}
