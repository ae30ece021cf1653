package status

import (
	"errors"
	"os"
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
