package remote

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"

	digest "github.com/opencontainers/go-digest"
)

// mapRefs is a Refs in memory.
type mapRefs struct {
	mu sync.Mutex
	m  map[string]digest.Digest
}

func (r *mapRefs) Ref(name string) (digest.Digest, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d, ok := r.m[name]
	return d, ok
}

func (r *mapRefs) SetRef(name string, d digest.Digest) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.m[name] = d
	return nil
}

// TestPullPolicies: a tag resolved once is not asked of the registry again
// under PullMissing (a moved tag keeps its old image, as docker run's
// --pull missing does), is asked again under PullAlways, which records the
// new answer, and under PullNever resolves only if recorded.
func TestPullPolicies(t *testing.T) {
	counter := &countRequests{}
	host := newRegistry(t, func(next http.Handler) http.Handler { counter.next = next; return counter })
	ref := host + "/test/pull:v1"
	v1img := pushRandom(t, ref, 1024, 2)
	v1d, _ := v1img.Digest()
	store := &mapStore{m: map[digest.Digest][]byte{}}
	refs := &mapRefs{m: map[string]digest.Digest{}}
	if _, err := Resolve(context.Background(), ref, WithStore(store), WithRefs(refs, PullNever)); !errors.Is(err, ErrNotPulled) {
		t.Fatalf("PullNever before any pull: %v, want ErrNotPulled", err)
	}
	if img := resolve(t, ref, WithStore(store), WithRefs(refs, PullMissing)); img.Digest() != v1d.String() {
		t.Fatalf("first resolve: %s, want %s", img.Digest(), v1d)
	}

	v2img := pushRandom(t, ref, 1024, 2) // the tag moves
	v2d, _ := v2img.Digest()
	before := counter.n.Load()
	for _, p := range []Pull{PullMissing, PullNever} {
		img := resolve(t, ref, WithStore(store), WithRefs(refs, p))
		if img.Digest() != v1d.String() {
			t.Errorf("pull %d after the tag moved: %s, want the recorded %s", p, img.Digest(), v1d)
		}
	}
	if n := counter.n.Load() - before; n != 0 {
		t.Errorf("resolving a recorded tag made %d requests, want 0", n)
	}
	if img := resolve(t, ref, WithStore(store), WithRefs(refs, PullAlways)); img.Digest() != v2d.String() {
		t.Errorf("PullAlways: %s, want the tag's new %s", img.Digest(), v2d)
	}
	if img := resolve(t, ref, WithStore(store), WithRefs(refs, PullMissing)); img.Digest() != v2d.String() {
		t.Errorf("PullMissing after PullAlways: %s, want %s", img.Digest(), v2d)
	}
	// Without refs, a tag is asked every time.
	before = counter.n.Load()
	resolve(t, ref, WithStore(store))
	if counter.n.Load() == before {
		t.Error("a tag resolved with no request and no refs")
	}
}

// TestPullMissingRecordGone: a recorded digest the registry no longer has
// (the tag moved and the old manifest was deleted) and the store does not
// hold is resolved by its tag again.
func TestPullMissingRecordGone(t *testing.T) {
	host := newRegistry(t, nil)
	ref := host + "/test/gone:v1"
	img := pushRandom(t, ref, 1024, 1)
	d, _ := img.Digest()
	refs := &mapRefs{m: map[string]digest.Digest{host + "/test/gone:v1": digest.FromString("deleted manifest")}}
	if got := resolve(t, ref, WithRefs(refs, PullMissing)); got.Digest() != d.String() {
		t.Fatalf("resolved %s, want the tag's %s", got.Digest(), d)
	}
	if got, _ := refs.Ref(host + "/test/gone:v1"); got != digest.Digest(d.String()) {
		t.Errorf("record after the fallback: %s, want %s", got, d)
	}
}
