package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stratafs/strata/status"
)

// TestChunkCacheAcrossMounts: with --cache, a second mount (a new process)
// of the same image serves a file read by the first one without fetching
// anything from the registry again: from the chunks, or from the whole file
// assembled from them.
func TestChunkCacheAcrossMounts(t *testing.T) {
	fx, ref := servedFixture(t, lazyFormats[len(lazyFormats)-1])
	cacheDir := t.TempDir()
	big := fx.baseFile("usr/lib/big")
	var last status.Mount
	for round := 1; round <= 2; round++ {
		m := mountRegistry(t, ref, "", "--cache", cacheDir)
		got, err := os.ReadFile(filepath.Join(m.Dir, "usr/lib/big"))
		if err != nil || string(got) != string(big) {
			t.Fatalf("round %d: read usr/lib/big: %d bytes, %v", round, len(got), err)
		}
		if round == 1 {
			last = waitStat(t, m.Dir, "the file served and stored whole", func(st status.Mount) bool {
				return layerSum(st, func(l status.Layer) int64 { return l.BytesServed }) >= int64(len(big)) &&
					layerSum(st, func(l status.Layer) int64 { return l.WholePuts }) >= 1
			})
			if layerSum(last, func(l status.Layer) int64 { return l.ChunkFetches }) == 0 {
				t.Fatal("the first mount fetched no chunk: nothing to test")
			}
		} else {
			last = waitStat(t, m.Dir, "the whole file opened", func(st status.Mount) bool {
				return layerSum(st, func(l status.Layer) int64 { return l.WholeOpens }) >= 1
			})
		}
		m.unmount(t)
	}
	if n := layerSum(last, func(l status.Layer) int64 { return l.ChunkFetches }); n != 0 {
		t.Errorf("the second mount fetched %d chunks from the registry, want 0 (all in the cache)", n)
	}
}

// waitStat polls strata stat until cond holds for the mount. The limit is
// generous: a capped cache's evictor may rest up to 10 s between checks.
func waitStat(t *testing.T, mnt, what string, cond func(status.Mount) bool) status.Mount {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var st status.Mount
		out, err := exec.Command(strataBin, "stat", "--json", mnt).Output()
		if err == nil && json.Unmarshal(out, &st) == nil && cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("stat of %s never showed %s: %v %s", mnt, what, err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitServed polls strata stat until the mount has served n bytes.
func waitServed(t *testing.T, mnt string, n int64) status.Mount {
	t.Helper()
	return waitStat(t, mnt, fmt.Sprintf("%d bytes served", n), func(st status.Mount) bool {
		return layerSum(st, func(l status.Layer) int64 { return l.BytesServed }) >= n
	})
}

func layerSum(st status.Mount, f func(status.Layer) int64) int64 { return sum(st.Layers, f) }

// sameAttrs checks that stat reports what want does: type, permissions,
// owner, size and mtime.
func sameAttrs(t *testing.T, what string, want os.FileInfo, stat func() (os.FileInfo, error)) {
	t.Helper()
	got, err := stat()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	w, g := want.Sys().(*syscall.Stat_t), got.Sys().(*syscall.Stat_t)
	if got.Mode() != want.Mode() || got.Size() != want.Size() || !got.ModTime().Equal(want.ModTime()) || g.Uid != w.Uid || g.Gid != w.Gid {
		t.Errorf("%s: %v %d:%d %d bytes, mtime %v; want %v %d:%d %d bytes, mtime %v", what,
			got.Mode(), g.Uid, g.Gid, got.Size(), got.ModTime(), want.Mode(), w.Uid, w.Gid, want.Size(), want.ModTime())
	}
}

// TestWholeFilePassthrough: once a lower file is cached whole, opens pass
// it through, but never while a handle served through strata is open (the
// kernel refuses to mix the two on one inode): every open succeeds and
// reads the right bytes, whatever is open at the time.
func TestWholeFilePassthrough(t *testing.T) {
	fx, ref := servedFixture(t, lazyFormats[0])
	big := fx.baseFile("usr/lib/big")
	// With an upper: a writable mount's reads update atimes, so the kernel
	// asks for a file's attributes again after a read.
	m := mountRegistry(t, ref, t.TempDir(), "--cache", t.TempDir())
	p := filepath.Join(m.Dir, "usr/lib/big")
	readAll := func(what string, fd *os.File) {
		t.Helper()
		got := make([]byte, len(big)+1)
		n, err := fd.ReadAt(got, 0)
		if n != len(big) || string(got[:n]) != string(big) {
			t.Fatalf("%s: %d bytes (%v), or wrong ones", what, n, err)
		}
	}
	open := func(what string) *os.File {
		t.Helper()
		fd, err := os.Open(p)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return fd
	}
	want, err := os.Lstat(p) // the image's attributes, before any open
	if err != nil {
		t.Fatal(err)
	}
	held := open("open served through strata")
	defer held.Close()
	readAll("first read", held)
	if got, err := os.ReadFile(p); err != nil || string(got) != string(big) {
		t.Fatalf("read by another open: %v", err)
	}
	waitStat(t, m.Dir, "the file stored whole", func(st status.Mount) bool {
		return layerSum(st, func(l status.Layer) int64 { return l.WholePuts }) >= 1
	})
	mixed := open("open while a cached handle is open")
	defer mixed.Close()
	readAll("read beside a cached handle", mixed)
	mixed.Close()
	held.Close()
	time.Sleep(100 * time.Millisecond) // RELEASE is asynchronous
	pt := open("open of the whole file")
	defer pt.Close()
	readAll("passthrough read", pt)
	// The read made the kernel ask for the attributes again (atime): they
	// are the image's, not those of the cache entry the open passes
	// through to (0644, root, stored a moment ago).
	sameAttrs(t, "stat during a passthrough open", want, func() (os.FileInfo, error) { return os.Stat(p) })
	sameAttrs(t, "fstat of a passthrough open", want, pt.Stat)
	pt2 := open("second open beside a passthrough one")
	defer pt2.Close()
	readAll("second passthrough read", pt2)
	pt2.Close()
	pt.Close()
	st := waitStat(t, m.Dir, "whole-file opens", func(st status.Mount) bool {
		return layerSum(st, func(l status.Layer) int64 { return l.WholeOpens }) >= 1
	})
	t.Logf("whole-file opens: %d", layerSum(st, func(l status.Layer) int64 { return l.WholeOpens }))
}
