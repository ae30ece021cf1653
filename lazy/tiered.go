package lazy

import (
	"sync"
	"sync/atomic"

	digest "github.com/opencontainers/go-digest"
)

// TieredStore is a ChunkStore made of a fast front store (memory) over a
// larger back store (the on-disk cache): a Get that misses the front and
// hits the back puts the chunk in the front; a Put goes to both. One
// TieredStore may serve every layer of every image a process mounts, so
// chunks that several layers share are fetched once.
type TieredStore struct {
	front, back ChunkStore

	// With NewAsyncTieredStore, Puts reach the back store on a goroutine
	// of the store's own: a reader waiting for a chunk then waits for the
	// memory copy only, not for the disk. queued is the bytes in queue,
	// which maxQueued bounds.
	queue     chan tieredPut
	queued    atomic.Int64
	maxQueued int64
	done      sync.WaitGroup
	once      sync.Once
}

type tieredPut struct {
	d    digest.Digest
	data []byte
}

var _ ChunkStore = (*TieredStore)(nil)

// NewTieredStore returns front over back.
func NewTieredStore(front, back ChunkStore) *TieredStore {
	return &TieredStore{front: front, back: back}
}

// maxQueuedPuts bounds the number of chunks an asynchronous TieredStore
// queues, whatever their size: small files make small chunks, and a layer
// of them is stored a few thousand at a time. (The queue's channel costs
// 40 bytes a slot, allocated at once.)
const maxQueuedPuts = 4096

// NewAsyncTieredStore returns front over back, putting into back in the
// background: up to maxBytes of chunks wait for it, and a Put beyond that
// writes itself. A chunk is in the front store when Put returns, and in
// the back store a moment later (or never, if the process ends first: a
// cache misses, it is never wrong). Close waits for the queue to drain.
func NewAsyncTieredStore(front, back ChunkStore, maxBytes int64) *TieredStore {
	t := &TieredStore{front: front, back: back, queue: make(chan tieredPut, maxQueuedPuts), maxQueued: maxBytes}
	t.done.Go(func() {
		for p := range t.queue {
			put(t.back, p.d, p.data)
			t.queued.Add(-int64(len(p.data)))
		}
	})
	return t
}

// Close ends the background Puts of an asynchronous store, after the
// queued ones are done. The store must not be used after it.
func (t *TieredStore) Close() error {
	if t.queue != nil {
		t.once.Do(func() { close(t.queue) })
		t.done.Wait()
	}
	return nil
}

// Get returns the chunk from the front store, else from the back one.
func (t *TieredStore) Get(d digest.Digest) ([]byte, bool) {
	if data, ok := t.front.Get(d); ok {
		return data, true
	}
	data, ok := t.back.Get(d)
	if ok {
		put(t.front, d, data)
	}
	return data, ok
}

// Put stores a verified chunk in both stores.
func (t *TieredStore) Put(d digest.Digest, data []byte) {
	put(t.front, d, data)
	if t.queue != nil {
		n := int64(len(data))
		if t.queued.Add(n) <= t.maxQueued {
			select {
			case t.queue <- tieredPut{d, data}:
				return
			default:
			}
		}
		t.queued.Add(-n) // the back store is behind: this reader pays for it
	}
	put(t.back, d, data)
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
