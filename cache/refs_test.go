package cache

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	digest "github.com/opencontainers/go-digest"
)

func TestRefs(t *testing.T) {
	s, _ := newStore(t)
	name := "127.0.0.1:5000/app:v1"
	if _, ok := s.Ref(name); ok {
		t.Fatal("a ref never set was found")
	}
	d1, d2 := digest.FromString("one"), digest.FromString("two")
	for _, d := range []digest.Digest{d1, d2} {
		if err := s.SetRef(name, d); err != nil {
			t.Fatal(err)
		}
		if got, ok := s.Ref(name); !ok || got != d {
			t.Fatalf("Ref = %s, %v; want %s", got, ok, d)
		}
	}
	if _, ok := s.Ref("127.0.0.1:5000/app:v2"); ok {
		t.Error("another tag of the repository was found")
	}
	// A new Store on the same directory (another process) sees it.
	s2, err := Open(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got, ok := s2.Ref(name); !ok || got != d2 {
		t.Errorf("a second Store's Ref = %s, %v; want %s", got, ok, d2)
	}
	if err := s.SetRef(name, "sha256:nothex"); err == nil {
		t.Error("SetRef took an invalid digest")
	}
	if err := s.SetRef(strings.Repeat("x", maxRefSize), d1); err == nil {
		t.Error("SetRef took a name over the size limit")
	}
}

// TestRefDamaged: whatever is at a ref's path that SetRef did not write
// there is a miss, never a digest of someone else's choosing by accident.
func TestRefDamaged(t *testing.T) {
	s, _ := newStore(t)
	name := "registry.example/app:latest"
	if err := s.SetRef(name, digest.FromString("x")); err != nil {
		t.Fatal(err)
	}
	p := s.refPath(name)
	for _, content := range []string{
		"",
		"registry.example/other:latest\n" + digest.FromString("x").String() + "\n", // another name's
		name + "\nsha256:zz\n",
		name,
		name + "\n" + digest.FromString("x").String() + strings.Repeat(" ", maxRefSize),
	} {
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if d, ok := s.Ref(name); ok {
			t.Errorf("ref file %.60q read as %s", content, d)
		}
	}
}

// TestRefRace: writers racing on one ref leave one of their digests,
// whole, and readers never see anything else.
func TestRefRace(t *testing.T) {
	s, _ := newStore(t)
	name := "registry.example/app:latest"
	want := map[digest.Digest]bool{}
	for i := range 8 {
		want[digest.FromString(fmt.Sprint(i))] = true
	}
	var wg sync.WaitGroup
	for d := range want {
		wg.Go(func() {
			for range 50 {
				if err := s.SetRef(name, d); err != nil {
					t.Error(err)
					return
				}
				if got, ok := s.Ref(name); !ok || !want[got] {
					t.Errorf("Ref = %s, %v during the race", got, ok)
				}
			}
		})
	}
	wg.Wait()
	if got, ok := s.Ref(name); !ok || !want[got] {
		t.Errorf("Ref = %s, %v after the race", got, ok)
	}
}
