package lazy

import (
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
