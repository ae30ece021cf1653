package lazy

import (
	"context"
	"math/rand/v2"
	"testing"
)

// TestStats: served bytes, chunk fetches and store hits add up to what the
// reads did. The first read fetches the file's 11 chunks in one window:
// chunk 0 is its own fetch, and each of the 10 others is found stored or
// still being decoded; the second read finds all 11 stored.
func TestStats(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	big := randBytes(r, 10_500) // 11 chunks of 1,000 bytes in the test builds
	tarData := makeTar(t, []tarEntry{reg("big", big)})
	for _, f := range testFormats {
		t.Run(f.name, func(t *testing.T) {
			l, _ := openBuilt(t, buildBlob(t, tarData, f.opts))
			c, err := l.Open(context.Background(), "big")
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, len(big))
			for range 2 {
				if n, err := c.ReadAt(buf, 0); n != len(big) || err != nil {
					t.Fatalf("read %d, %v", n, err)
				}
			}
			s := l.Stats()
			if s.BytesServed != 2*int64(len(big)) {
				t.Errorf("BytesServed %d, want %d", s.BytesServed, 2*len(big))
			}
			if s.ChunkFetches != 11 || s.ChunkHits+s.ChunkWaits != 21 || s.ChunkHits < 11 || s.FetchErrors != 0 {
				t.Errorf("fetches %d hits %d waits %d errors %d; want 11, 11-21, 21 in all, 0",
					s.ChunkFetches, s.ChunkHits, s.ChunkWaits, s.FetchErrors)
			}
			if s.RangeRequests != 1 || s.ReadAheads != 0 {
				t.Errorf("%d range requests, %d read-aheads; want 1, 0", s.RangeRequests, s.ReadAheads)
			}
		})
	}
}
