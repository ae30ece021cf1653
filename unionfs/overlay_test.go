package unionfs

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestMountWatchWakes: every change to the mount table wakes a Wait. Go's
// own poller once took the change notification of the watched file for
// itself, and a Wait then slept out its whole timeout after most changes.
func TestMountWatchWakes(t *testing.T) {
	w, err := WatchMounts()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	dir := t.TempDir()
	const timeout = 3 * time.Second
	missed := 0
	for i := range 10 {
		change := unix.Unmount
		if i%2 == 0 {
			change = func(target string, _ int) error { return unix.Mount("none", target, "tmpfs", 0, "") }
		}
		time.Sleep(20 * time.Millisecond) // let Go's poller settle, as between a server's checks
		if err := change(dir, 0); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := w.Wait(timeout); err != nil {
			t.Fatal(err)
		}
		if time.Since(start) >= timeout {
			missed++
		}
	}
	unix.Unmount(dir, unix.MNT_DETACH)
	if missed > 0 {
		t.Errorf("%d of 10 mount table changes did not wake Wait", missed)
	}
}
