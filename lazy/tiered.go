package lazy

import digest "github.com/opencontainers/go-digest"

// TieredStore is a ChunkStore made of a fast front store (memory) over a
// larger back store (the on-disk cache): a Get that misses the front and
// hits the back puts the chunk in the front; a Put goes to both. One
// TieredStore may serve every layer of every image a process mounts, so
// chunks that several layers share are fetched once.
type TieredStore struct {
	front, back ChunkStore
}

var _ ChunkStore = (*TieredStore)(nil)

// NewTieredStore returns front over back.
func NewTieredStore(front, back ChunkStore) *TieredStore {
	return &TieredStore{front: front, back: back}
}

// Get returns the chunk from the front store, else from the back one.
func (t *TieredStore) Get(d digest.Digest) ([]byte, bool) {
	if data, ok := t.front.Get(d); ok {
		return data, true
	}
	data, ok := t.back.Get(d)
	if ok {
		t.front.Put(d, data)
	}
	return data, ok
}

// Put stores a verified chunk in both stores.
func (t *TieredStore) Put(d digest.Digest, data []byte) {
	t.front.Put(d, data)
	t.back.Put(d, data)
}

// Has reports whether either store holds the chunk, without reading it
// where a store can tell cheaply.
func (t *TieredStore) Has(d digest.Digest) bool {
	return storeHas(t.front, d) || storeHas(t.back, d)
}

func storeHas(s ChunkStore, d digest.Digest) bool {
	if h, ok := s.(presence); ok {
		return h.Has(d)
	}
	_, ok := s.Get(d)
	return ok
}
