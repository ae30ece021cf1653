package lazy

import (
	"sync"
	"sync/atomic"
	"time"
)

// Stats are a layer's counters since it was opened, for `strata stat`.
type Stats struct {
	BytesServed  int64 // file bytes returned to readers
	ChunkHits    int64 // chunks found in the chunk store
	ChunkWaits   int64 // chunk reads that waited for a fetch already under way
	ChunkFetches int64 // chunks fetched from the blob, decompressed and verified, read-ahead and merged windows included
	// RangeRequests counts the blob reads made for chunk data (one HTTP
	// Range request each with lazy/remote): fewer than ChunkFetches when
	// windows merge chunks.
	RangeRequests int64
	ReadAheads    int64 // read-ahead windows started
	Prefetches    int64 // prefetch windows started (see Layer.Prefetch)
	WholeOpens    int64 // opens served by a whole file from the FileStore
	WholePuts     int64 // files this layer assembled into the FileStore
	BytesFed      int64 // file bytes given whole by ReadLocal, for the kernel's page cache ahead of reads
	FetchErrors   int64 // chunk fetches or verifications that failed (cancellations excluded)
	LastError     string
	LastErrorAt   time.Time
}

// layerStats is Stats kept current under concurrent reads.
type layerStats struct {
	served, hits, waits, fetches, errors atomic.Int64
	requests, readAheads, prefetches     atomic.Int64
	wholeOpens, wholePuts, fed           atomic.Int64

	mu        sync.Mutex // guards lastError and lastAt
	lastError string
	lastAt    time.Time
}

func (s *layerStats) failed(err error) {
	s.errors.Add(1)
	s.mu.Lock()
	s.lastError, s.lastAt = err.Error(), time.Now()
	s.mu.Unlock()
}

// Stats returns a snapshot of the layer's counters.
func (l *Layer) Stats() Stats {
	s := &l.stats
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{
		BytesServed:   s.served.Load(),
		ChunkHits:     s.hits.Load(),
		ChunkWaits:    s.waits.Load(),
		ChunkFetches:  s.fetches.Load(),
		RangeRequests: s.requests.Load(),
		ReadAheads:    s.readAheads.Load(),
		Prefetches:    s.prefetches.Load(),
		WholeOpens:    s.wholeOpens.Load(),
		WholePuts:     s.wholePuts.Load(),
		BytesFed:      s.fed.Load(),
		FetchErrors:   s.errors.Load(),
		LastError:     s.lastError,
		LastErrorAt:   s.lastAt,
	}
}
