package remote

import (
	"sync"
	"time"
)

// Stats counts one blob's traffic since its Image was resolved.
type Stats struct {
	Reads        int64     // ReadAt calls that needed the network
	Requests     int64     // HTTP requests sent, retries and re-resolves included
	Retries      int64     // requests sent again after a failure
	BytesFetched int64     // response body bytes received, skipped ones included
	Failures     int64     // requests that failed
	LastError    error     // the last failed request's error, nil if none
	LastErrorAt  time.Time // when it happened
}

// stats is updated by every reader of a blob at once.
type stats struct {
	mu sync.Mutex // guards s
	s  Stats
}

func (st *stats) snapshot() Stats {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.s
}

func (st *stats) add(f func(s *Stats)) {
	st.mu.Lock()
	defer st.mu.Unlock()
	f(&st.s)
}

func (st *stats) read()           { st.add(func(s *Stats) { s.Reads++ }) }
func (st *stats) request()        { st.add(func(s *Stats) { s.Requests++ }) }
func (st *stats) retry()          { st.add(func(s *Stats) { s.Retries++ }) }
func (st *stats) fetched(n int64) { st.add(func(s *Stats) { s.BytesFetched += n }) }

func (st *stats) failed(err error) {
	st.add(func(s *Stats) {
		s.Failures++
		s.LastError = err
		s.LastErrorAt = time.Now()
	})
}
