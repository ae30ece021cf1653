package lazy

import (
	"testing"

	digest "github.com/opencontainers/go-digest"
)

func TestMemoryStoreEviction(t *testing.T) {
	s := NewMemoryStore(10)
	d := func(s string) digest.Digest { return digest.FromString(s) }
	s.Put(d("a"), []byte("aaaa"))
	s.Put(d("b"), []byte("bbbb"))
	if _, ok := s.Get(d("a")); !ok { // a is now the most recently used
		t.Fatal("a missing")
	}
	s.Put(d("c"), []byte("cccc")) // evicts b, the least recently used
	if _, ok := s.Get(d("b")); ok {
		t.Error("b kept past the limit")
	}
	for _, k := range []string{"a", "c"} {
		if v, ok := s.Get(d(k)); !ok || string(v) != k+k+k+k {
			t.Errorf("%s: %q, %v", k, v, ok)
		}
	}
	s.Put(d("huge"), make([]byte, 11))
	if n, bytes := s.Len(); n != 2 || bytes != 8 {
		t.Errorf("Len = %d chunks, %d bytes", n, bytes)
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, o := range []Option{WithMaxEntries(0), WithMaxTOCSize(-1), WithMaxChunkSize(0), WithCacheSize(0), WithChunkStore(nil),
		WithFetchWindow(-1), WithFetchWindow(2 << 30), WithReadAhead(-1)} {
		var opts options
		if err := o(&opts); err == nil {
			t.Error("invalid option accepted")
		}
	}
}
