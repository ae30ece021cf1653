package status

import (
	"errors"
	"io"
	"log"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestWriteReadRemove(t *testing.T) {
	dir := t.TempDir()
	mnt := t.TempDir()
	if _, err := Read(dir, mnt); !errors.Is(err, ErrNotMounted) {
		t.Fatalf("Read before Write: %v, want ErrNotMounted", err)
	}
	m := &Mount{Mountpoint: mnt, Source: "img", PID: os.Getpid(), Started: time.Now(),
		Layers: []Layer{{Name: "sha256:aa", Size: 100, BytesFetched: 10}}}
	if err := Write(dir, m); err != nil {
		t.Fatal(err)
	}
	got, err := Read(dir, mnt+"/") // the same mountpoint, spelled differently
	if err != nil {
		t.Fatal(err)
	}
	if got.Source != "img" || len(got.Layers) != 1 || got.Layers[0].BytesFetched != 10 {
		t.Errorf("read back %+v", got)
	}
	if err := Remove(dir, mnt); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(dir, mnt); !errors.Is(err, ErrNotMounted) {
		t.Errorf("Read after Remove: %v, want ErrNotMounted", err)
	}
}

func TestStale(t *testing.T) {
	dir, mnt := t.TempDir(), t.TempDir()
	// PIDs wrap far below this on Linux (pid_max <= 4194304).
	if err := Write(dir, &Mount{Mountpoint: mnt, PID: 1 << 30}); err != nil {
		t.Fatal(err)
	}
	if m, err := Read(dir, mnt); !errors.Is(err, ErrStale) || m == nil {
		t.Errorf("Read of a dead process's status: %v, %v; want ErrStale with the status", m, err)
	}
}

// TestSweep: the status files of dead processes go, and so do temporary
// files old enough to be a dead writer's; live mounts' files, the caller's
// own, and files that are no status stay.
func TestSweep(t *testing.T) {
	dir := t.TempDir()
	dead, live, own := t.TempDir(), t.TempDir(), t.TempDir()
	for _, m := range []*Mount{
		{Mountpoint: dead, PID: 1 << 30},
		{Mountpoint: live, PID: os.Getpid()},
		{Mountpoint: own, PID: 1 << 30},
	} {
		if err := Write(dir, m); err != nil {
			t.Fatal(err)
		}
	}
	other := map[string]time.Time{
		"notes.txt":      time.Now(),
		"garbled.json":   time.Now(),
		".tmp-fresh":     time.Now(),
		".tmp-abandoned": time.Now().Add(-2 * staleTemp),
	}
	for name, mtime := range other {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("{"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	n, err := Sweep(dir, own)
	if err != nil || n != 1 {
		t.Fatalf("Sweep: %d, %v; want 1 status file removed", n, err)
	}
	if _, err := Read(dir, dead); !errors.Is(err, ErrNotMounted) {
		t.Errorf("dead process's status: %v; want it removed", err)
	}
	if _, err := Read(dir, live); err != nil {
		t.Errorf("live mount's status: %v", err)
	}
	if _, err := Read(dir, own); !errors.Is(err, ErrStale) {
		t.Errorf("caller's own status: %v; want it kept", err)
	}
	for name := range other {
		_, err := os.Stat(filepath.Join(dir, name))
		if gone := errors.Is(err, os.ErrNotExist); gone != (name == ".tmp-abandoned") {
			t.Errorf("%s: removed %v", name, gone)
		}
	}
	if n, err := Sweep(filepath.Join(dir, "missing"), own); n != 0 || err != nil {
		t.Errorf("Sweep of a missing directory: %d, %v", n, err)
	}
}

// TestStartStop: the status is there while the mount runs, and stop
// removes it only after the write under way: a removal that did not wait
// was undone by that write's rename.
func TestStartStop(t *testing.T) {
	dir, mnt := t.TempDir(), t.TempDir()
	t.Setenv("STRATA_RUNTIME_DIR", dir)
	logger := log.New(io.Discard, "", 0)
	stop := Start(logger, &Mount{Mountpoint: mnt, PID: os.Getpid()}, func() ([]Layer, *Cache) { return nil, nil })
	deadline := time.Now().Add(10 * time.Second)
	for _, err := Read(dir, mnt); err != nil; _, err = Read(dir, mnt) {
		if time.Now().After(deadline) {
			t.Fatalf("no status published: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	stop()
	if _, err := Read(dir, mnt); !errors.Is(err, ErrNotMounted) {
		t.Fatalf("after stop: %v; want ErrNotMounted", err)
	}

	collecting := make(chan struct{}, 1)
	slow := func() ([]Layer, *Cache) {
		select {
		case collecting <- struct{}{}:
		default:
		}
		time.Sleep(100 * time.Millisecond)
		return nil, nil
	}
	stop = Start(logger, &Mount{Mountpoint: mnt, PID: os.Getpid()}, slow)
	<-collecting // a write is under way
	stop()
	time.Sleep(200 * time.Millisecond) // a write stop did not wait for lands by then
	if _, err := Read(dir, mnt); !errors.Is(err, ErrNotMounted) {
		t.Fatalf("stop during a write: %v; want ErrNotMounted", err)
	}
	stop() // a second call does nothing
}
