package lazy

import (
	"fmt"
	"testing"

	digest "github.com/opencontainers/go-digest"
)

func TestTieredStore(t *testing.T) {
	front, back := NewMemoryStore(1<<20), NewMemoryStore(1<<20)
	s := NewTieredStore(front, back)
	a, b := []byte("chunk a"), []byte("chunk b")
	da, db := digest.FromBytes(a), digest.FromBytes(b)
	s.Put(da, a)
	if _, ok := back.Get(da); !ok {
		t.Fatal("Put did not reach the back store")
	}
	back.Put(db, b) // as if left by an earlier process
	if got, ok := s.Get(db); !ok || string(got) != string(b) {
		t.Fatalf("Get from the back store: %q, %v", got, ok)
	}
	if _, ok := front.Get(db); !ok {
		t.Error("a back-store hit was not promoted to the front")
	}
	if _, ok := s.Get(digest.FromString("missing")); ok {
		t.Error("Get of a missing chunk hit")
	}
	if !s.Has(da) || !s.Has(db) || s.Has(digest.FromString("missing")) {
		t.Error("Has disagrees with what was stored")
	}
}

// TestAsyncTieredStore: Puts reach the back store in the background, all
// of them by Close, with more bytes Put than the queue holds.
func TestAsyncTieredStore(t *testing.T) {
	front, back := NewMemoryStore(1<<20), NewMemoryStore(1<<20)
	s := NewAsyncTieredStore(front, back, 20)
	var ds []digest.Digest
	for i := range 50 {
		data := []byte(fmt.Sprintf("chunk %d", i))
		d := digest.FromBytes(data)
		s.Put(d, data)
		if _, ok := front.Get(d); !ok {
			t.Fatalf("chunk %d not in the front store when Put returned", i)
		}
		ds = append(ds, d)
	}
	s.Close()
	for i, d := range ds {
		if _, ok := back.Get(d); !ok {
			t.Errorf("chunk %d never reached the back store", i)
		}
	}
}
