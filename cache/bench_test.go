package cache

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
)

// benchEntriesEnv sets how many entries the benchmarks' cache holds
// (default 100000).
const benchEntriesEnv = "STRATA_CACHE_BENCH_ENTRIES"

// benchDirParent is where the benchmarks build their cache: a real disk
// (not a tmpfs /tmp), since a million files is what they are about.
const benchDirParent = "/var/tmp"

// BenchmarkLargeCache measures a Store on a cache of many entries: Open
// (what a mount pays at start, with and without a cap, which must not
// depend on the number of entries), and the full scans that only the
// background goroutine, GC, Walk and Usage make.
func BenchmarkLargeCache(b *testing.B) {
	n := 100000
	if v := os.Getenv(benchEntriesEnv); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 0 {
			b.Fatalf("%s=%q: want a number of entries", benchEntriesEnv, v)
		}
	}
	dir := benchCache(b, n)
	b.Run(fmt.Sprintf("Open/entries=%d", n), func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			s, err := Open(dir)
			if err != nil {
				b.Fatal(err)
			}
			s.Close()
		}
	})
	// With a cap the Store also starts its goroutine, which reads the
	// usage record; Close waits for it.
	b.Run(fmt.Sprintf("OpenCapped/entries=%d", n), func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			s, err := Open(dir, WithMaxSize(1<<50))
			if err != nil {
				b.Fatal(err)
			}
			s.Close()
			if s.scanned.Load() != 0 {
				b.Fatal("Open walked the entries")
			}
		}
	})
	s, err := Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	b.Run(fmt.Sprintf("Usage/entries=%d", n), func(b *testing.B) {
		for b.Loop() {
			u, err := s.Usage(b.Context())
			if err != nil || u.Chunks.Entries != int64(n) {
				b.Fatalf("Usage = %+v, %v", u, err)
			}
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
	})
	b.Run(fmt.Sprintf("GCReconcile/entries=%d", n), func(b *testing.B) {
		for b.Loop() {
			if _, err := s.GC(b.Context(), GCOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
	})
}

// benchCache builds a cache of n 100-byte chunk entries under
// benchDirParent, written straight into place (as fast as the disk
// allows), with its usage record reconciled, and removes it when the
// benchmark ends.
func benchCache(b *testing.B, n int) string {
	b.Helper()
	dir, err := os.MkdirTemp(benchDirParent, "strata-cache-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		start := time.Now()
		if err := os.RemoveAll(dir); err != nil {
			b.Error(err)
		}
		b.Logf("removed %d entries in %v", n, time.Since(start).Round(time.Millisecond))
	})
	start := time.Now()
	var wg sync.WaitGroup
	const workers = 2
	errs := make([]error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n && errs[w] == nil; i += workers {
				errs[w] = writeBenchEntry(dir, i)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	made := time.Since(start)
	s, err := Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	start = time.Now()
	if _, err := s.GC(b.Context(), GCOptions{}); err != nil {
		b.Fatal(err)
	}
	b.Logf("built %d entries in %v, first reconciling scan %v", n, made.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	return dir
}

func writeBenchEntry(dir string, i int) error {
	data := make([]byte, 100)
	binary.LittleEndian.PutUint64(data, uint64(i))
	sum := sha256.Sum256(data)
	enc := hex.EncodeToString(sum[:])
	p := filepath.Join(dir, "chunks", "sha256", enc[:2], enc)
	err := os.WriteFile(p, data, 0o644)
	if os.IsNotExist(err) {
		if err = os.MkdirAll(filepath.Dir(p), 0o755); err == nil {
			err = os.WriteFile(p, data, 0o644)
		}
	}
	return err
}

// BenchmarkPut measures storing a new 64 KiB chunk, and apart from it the
// usage-record update every stored entry pays (a flock'd read-modify-write
// of DIR/usage).
func BenchmarkPut(b *testing.B) {
	s, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	base, _ := testFile(1, 64<<10)
	b.Run("Put/64KiB", func(b *testing.B) {
		b.SetBytes(int64(len(base)))
		b.ReportAllocs()
		i := uint64(0)
		for b.Loop() {
			i++
			binary.LittleEndian.PutUint64(base, i)
			s.Put(digest.FromBytes(base), base)
		}
		if st := s.Stats(); st.Puts != int64(i) {
			b.Fatalf("Stats = %+v after %d Puts", st, i)
		}
	})
	// Small chunks from two writers at once, as a layer of small files is
	// stored: the cost is then mostly the file system's create and link.
	b.Run("Put/8KiB-parallel", func(b *testing.B) {
		b.SetBytes(8 << 10)
		b.ReportAllocs()
		var n atomic.Uint64
		b.RunParallel(func(pb *testing.PB) {
			data, _ := testFile(3, 8<<10)
			for pb.Next() {
				binary.LittleEndian.PutUint64(data, n.Add(1)+1<<32)
				s.Put(digest.FromBytes(data), data)
			}
		})
	})
	b.Run("UsageUpdate", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.adjustUsage(0, 0); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkOpenFile measures opening a 64 MiB file entry: the first open
// in a Store, which hashes it, and the warm opens after it, which only
// fstat it and compare.
func BenchmarkOpenFile(b *testing.B) {
	dir := b.TempDir()
	s, err := Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	data, d := testFile(2, 64<<20)
	if err := s.PutFile(d, int64(len(data)), fillIn(data)); err != nil {
		b.Fatal(err)
	}
	b.Run("first", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			fresh, err := Open(dir)
			if err != nil {
				b.Fatal(err)
			}
			f, ok := fresh.OpenFile(d)
			if !ok {
				b.Fatal("miss")
			}
			f.Close()
		}
	})
	b.Run("warm", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			f, ok := s.OpenFile(d)
			if !ok {
				b.Fatal("miss")
			}
			f.Close()
		}
	})
}

// BenchmarkGet measures the read of a chunk from the cache, the warm path
// of a lazy read whose chunk is not in memory: open, read, verify.
func BenchmarkGet(b *testing.B) {
	s, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	for _, size := range []int{4 << 10, 1 << 20} {
		data, _ := testFile(2, size)
		d := digest.FromBytes(data)
		s.Put(d, data)
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := s.Get(d); !ok {
					b.Fatal("miss")
				}
			}
		})
	}
}
