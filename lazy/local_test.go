package lazy

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// TestReadLocal: ReadLocal never fetches; it gives a file whole once every
// chunk of it is stored, and nothing for a file too big, a directory or a
// missing path.
func TestReadLocal(t *testing.T) {
	r := rand.New(rand.NewPCG(51, 52))
	tarData := makeTar(t, []tarEntry{reg("a", randBytes(r, 9000)), reg("b", randBytes(r, 3000)), reg("empty", nil)})
	want := tarFiles(t, tarData)
	for _, f := range testFormats {
		t.Run(f.name, func(t *testing.T) {
			l, mb := openBuilt(t, buildBlob(t, tarData, f.opts), WithFetchWindow(0), WithReadAhead(0))
			opened := mb.reads.Load()
			if _, ok := l.ReadLocal("a", 1<<20); ok {
				t.Fatal("ReadLocal gave a file nothing has fetched")
			}
			if n := mb.reads.Load() - opened; n != 0 {
				t.Fatalf("ReadLocal read the blob %d times; want never", n)
			}
			readSequential(t, l, "a", 1000)
			got, ok := l.ReadLocal("a", 1<<20)
			if !ok || !bytes.Equal(got, want["a"]) {
				t.Fatalf("ReadLocal(a) after a read: %d bytes, %v; want its %d bytes", len(got), ok, len(want["a"]))
			}
			if s := l.Stats(); s.BytesFed != int64(len(want["a"])) {
				t.Errorf("BytesFed = %d, want %d", s.BytesFed, len(want["a"]))
			}
			for _, tc := range []struct {
				path string
				max  int64
			}{{"a", 8999}, {"b", 1 << 20}, {"empty", 1 << 20}, {"", 1 << 20}, {"missing", 1 << 20}} {
				if _, ok := l.ReadLocal(tc.path, tc.max); ok {
					t.Errorf("ReadLocal(%q, %d) gave bytes", tc.path, tc.max)
				}
			}
		})
	}
}

// TestScanning: a layer counts as being scanned from the read that makes
// its readers' windows a scan (TestPrefetchAutoScan) until scanLinger
// after the scan or its prefetch last showed.
func TestScanning(t *testing.T) {
	r := rand.New(rand.NewPCG(53, 54))
	var ents []tarEntry
	for i := range 20 {
		ents = append(ents, reg(fmt.Sprintf("f%02d", i), randBytes(r, 3000)))
	}
	b := buildBlob(t, makeTar(t, ents), testFormats[1].opts)
	l, _ := openBuilt(t, b, WithFetchWindow(0), WithReadAhead(0))
	l.Prefetch(PrefetchAuto)
	for _, i := range []int{15, 12, 18} {
		readSequential(t, l, fmt.Sprintf("f%02d", i), 1000)
	}
	if l.Scanning() {
		t.Fatal("files read out of order count as a scan")
	}
	for i := range scanRun + 1 {
		readSequential(t, l, fmt.Sprintf("f%02d", i), 1000)
	}
	if !l.Scanning() {
		t.Fatalf("%d files read in blob order do not count as a scan", scanRun+1)
	}
	l.scanAt.Store(time.Now().Add(-scanLinger - time.Second).UnixNano())
	if l.Scanning() {
		t.Error("a scan that last showed more than scanLinger ago still counts")
	}
}

// TestScanningNotRecording: a recording layer never counts as scanned, so
// no file of it is read from the page cache without its knowing.
func TestScanningNotRecording(t *testing.T) {
	r := rand.New(rand.NewPCG(55, 56))
	var ents []tarEntry
	for i := range 10 {
		ents = append(ents, reg(fmt.Sprintf("f%02d", i), randBytes(r, 3000)))
	}
	l, _ := openBuilt(t, buildBlob(t, makeTar(t, ents), testFormats[1].opts), WithFetchWindow(0), WithReadAhead(0), WithRecord())
	l.Prefetch(PrefetchAuto)
	for i := range scanRun + 1 {
		readSequential(t, l, fmt.Sprintf("f%02d", i), 1000)
	}
	if l.Scanning() {
		t.Error("a recording layer counts as scanned")
	}
	if !l.scanned() {
		t.Error("test setup: the reads were no scan")
	}
}
