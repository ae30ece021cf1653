package status

import (
	"log"
	"sync"
	"time"

	"github.com/stratafs/strata/cache"
	"github.com/stratafs/strata/lazy"
	"github.com/stratafs/strata/lazy/remote"
)

// Every is how often a mount rewrites its status file.
const Every = time.Second

// Collect reads a mount's layer counters, and its cache's if it has one.
type Collect func() ([]Layer, *Cache)

// Start publishes m's status file in Dir, from collect, at once and then
// every Every, until the function it returns is called. That function
// waits for the write under way, if any, and then removes the file: a
// removal that did not wait could be undone by the rename of a write that
// was already running, which left a status file behind for a mount that
// is gone. It may be called more than once.
//
// Start also sweeps Dir of the files of mounts whose process was killed
// (see Sweep), once, in the background.
func Start(logger *log.Logger, m *Mount, collect Collect) (stop func()) {
	done, gone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(gone)
		if n, err := Sweep(Dir(), m.Mountpoint); err != nil {
			logger.Printf("status: sweeping %s: %v", Dir(), err)
		} else if n > 0 {
			logger.Printf("status: removed %d status files of mounts whose process is gone", n)
		}
		publish(done, logger, m, collect)
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			<-gone
			if err := Remove(Dir(), m.Mountpoint); err != nil {
				logger.Print(err)
			}
		})
	}
}

// publish keeps m's status file current, from collect, until done closes.
// A status that cannot be written is logged once: it must not stop a
// mount.
func publish(done <-chan struct{}, logger *log.Logger, m *Mount, collect Collect) {
	tick := time.NewTicker(Every)
	defer tick.Stop()
	warned := false
	for {
		m.Layers, m.Cache = collect()
		m.Updated = time.Now()
		if err := Write(Dir(), m); err != nil && !warned {
			logger.Printf("status for 'strata stat' not published: %v", err)
			warned = true
		}
		select {
		case <-done:
			return
		case <-tick.C:
		}
	}
}

// LayerOf describes a registry layer: its blob's requests, and what the
// lazy layer l served, or, with l nil, the stream that indexes it (streamErr
// is the stream's error, if it failed).
func LayerOf(blob *remote.Blob, l *lazy.Layer, streamErr error) Layer {
	bs := blob.Stats()
	out := Layer{Name: blob.Digest(), Size: blob.Size(),
		BytesFetched: bs.BytesFetched, Requests: bs.Requests, Retries: bs.Retries, Errors: bs.Failures}
	if bs.LastError != nil {
		out.LastError = bs.LastError.Error()
	}
	if l == nil {
		out.Format = "stream"
		if streamErr != nil {
			out.Errors++
			out.LastError = streamErr.Error()
		}
		return out
	}
	ls := l.Stats()
	out.Format, out.BytesServed, out.ChunkHits, out.ChunkFetches = l.Format(), ls.BytesServed, ls.ChunkHits, ls.ChunkFetches
	out.Prefetches, out.WholeOpens, out.WholePuts, out.BytesFed = ls.Prefetches, ls.WholeOpens, ls.WholePuts, ls.BytesFed
	out.Errors += ls.FetchErrors
	out.LastError = lastError(ls, bs)
	return out
}

// lastError is the later of a layer's last chunk error and its blob's last
// request error.
func lastError(ls lazy.Stats, bs remote.Stats) string {
	if bs.LastError != nil && bs.LastErrorAt.After(ls.LastErrorAt) {
		return bs.LastError.Error()
	}
	return ls.LastError
}

// CacheOf describes the on-disk cache in dir as disk sees it; nil without
// one.
func CacheOf(disk *cache.Store, dir string) *Cache {
	if disk == nil {
		return nil
	}
	s := disk.Stats()
	return &Cache{Dir: dir, Bytes: s.Bytes, Entries: s.Entries, MaxSize: s.MaxSize,
		Hits: s.Hits + s.FileHits, Misses: s.Misses + s.FileMisses, Puts: s.Puts + s.FilePuts,
		Evictions: s.Evictions, EvictedBytes: s.EvictedBytes, Corrupt: s.Corrupt}
}
