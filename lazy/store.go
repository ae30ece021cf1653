package lazy

import (
	"container/list"
	"sync"

	digest "github.com/opencontainers/go-digest"
)

// ChunkStore keeps decompressed chunks that have been verified, keyed by
// their digest. It is the seam where the on-disk cache plugs in.
//
// Put is only ever given bytes that match d; Get must only return bytes that
// were Put under d (a store that keeps them outside the process re-verifies
// them when it loads them, since Layer trusts what Get returns). Neither
// side modifies a slice after handing it over. A store may drop anything at
// any time; a failed Put or Get is a miss, not an error.
type ChunkStore interface {
	Get(d digest.Digest) ([]byte, bool)
	Put(d digest.Digest, data []byte)
}

// verifiedPutter is the optional ChunkStore method that takes bytes
// without hashing them again: a store that checks what it is given (as
// package cache does, for callers it cannot trust) may offer it, since
// Layer only ever stores bytes it has just checked against d itself.
type verifiedPutter interface {
	PutVerified(d digest.Digest, data []byte)
}

// put gives s a chunk that matches d, through PutVerified where s has it.
func put(s ChunkStore, d digest.Digest, data []byte) {
	if v, ok := s.(verifiedPutter); ok {
		v.PutVerified(d, data)
		return
	}
	s.Put(d, data)
}

// MemoryStore is a ChunkStore holding at most a fixed number of bytes in
// memory, evicting the least recently used chunk first.
type MemoryStore struct {
	mu    sync.Mutex // guards used, order and items
	max   int64
	used  int64
	order *list.List // of *memItem, most recently used first
	items map[digest.Digest]*list.Element
}

type memItem struct {
	d    digest.Digest
	data []byte
}

var _ ChunkStore = (*MemoryStore)(nil)

// NewMemoryStore returns a store holding up to maxBytes of chunk data.
func NewMemoryStore(maxBytes int64) *MemoryStore {
	return &MemoryStore{max: maxBytes, order: list.New(), items: map[digest.Digest]*list.Element{}}
}

// Get returns the chunk stored under d.
func (s *MemoryStore) Get(d digest.Digest) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	el, ok := s.items[d]
	if !ok {
		return nil, false
	}
	s.order.MoveToFront(el)
	return el.Value.(*memItem).data, true
}

// Put stores data under d, evicting older chunks to make room. A chunk
// larger than the whole store is not kept.
func (s *MemoryStore) Put(d digest.Digest, data []byte) {
	size := int64(len(data))
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.items[d]; ok || size > s.max {
		return
	}
	for s.used+size > s.max {
		s.evictOldest()
	}
	s.items[d] = s.order.PushFront(&memItem{d: d, data: data})
	s.used += size
}

// Has reports whether d is stored, without counting as a use of it. A
// ChunkStore may offer Has: a Layer uses it to plan its fetches without
// loading chunks it does not need.
func (s *MemoryStore) Has(d digest.Digest) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.items[d]
	return ok
}

// Len reports the number of chunks and bytes held.
func (s *MemoryStore) Len() (chunks int, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.items), s.used
}

func (s *MemoryStore) evictOldest() {
	el := s.order.Back()
	it := el.Value.(*memItem)
	s.order.Remove(el)
	delete(s.items, it.d)
	s.used -= int64(len(it.data))
}
