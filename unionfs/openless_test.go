package unionfs

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/stratafs/strata/layer"
	"golang.org/x/sys/unix"
)

// An open-less mount cannot see opens for writing, so it cannot copy up:
// Mount refuses it with an upper before touching anything.
func TestOpenlessRefusesUpper(t *testing.T) {
	mnt := t.TempDir()
	_, err := Mount(context.Background(), mnt, []layer.Layer{memLayer{"": dir(false)}},
		WithOpenless(true), WithUpper(t.TempDir()))
	if err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("Mount(open-less, upper) = %v, want a refusal naming read-only mounts", err)
	}
}

func TestDataSeek(t *testing.T) {
	tests := []struct {
		off, size uint64
		whence    uint32
		want      uint64
		errno     syscall.Errno
	}{
		{0, 10, unix.SEEK_DATA, 0, 0},
		{4, 10, unix.SEEK_DATA, 4, 0},
		{4, 10, unix.SEEK_HOLE, 10, 0},
		{10, 10, unix.SEEK_DATA, 0, syscall.ENXIO},
		{10, 10, unix.SEEK_HOLE, 0, syscall.ENXIO},
		{0, 0, unix.SEEK_HOLE, 0, syscall.ENXIO},
		{0, 10, unix.SEEK_SET, 0, syscall.EINVAL},
	}
	for _, tc := range tests {
		got, errno := dataSeek(tc.off, tc.size, tc.whence)
		if got != tc.want || errno != tc.errno {
			t.Errorf("dataSeek(%d, %d, %d) = %d, %v; want %d, %v", tc.off, tc.size, tc.whence, got, errno, tc.want, tc.errno)
		}
	}
}

// TestOpenlessDirectories: an open-less mount answers OPENDIR with ENOSYS,
// so the kernel lists directories without a handle (noOpendir). Listings
// stay whole, however many READDIRPLUS requests a big directory takes and
// at whatever offset, on every open, and through a rewound descriptor.
func TestOpenlessDirectories(t *testing.T) {
	const n = 1500
	var ents []layer.Entry
	var want []string
	id := func(e layer.Entry, id uint64) layer.Entry { e.ID = id; return e } // one inode each
	for i := range n {
		name := fmt.Sprintf("%04d-%s", i, strings.Repeat("x", 100))
		ents = append(ents, id(f(name), uint64(10+i)))
		want = append(want, name)
	}
	lower := memLayer{"": dir(false, id(d("big"), 1), id(d("small"), 2)), "big": dir(false, ents...),
		"small": dir(false, id(f("one"), 3))}
	mnt := t.TempDir()
	srv, err := Mount(context.Background(), mnt, []layer.Layer{lower}, WithOpenless(true))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Unmount()
	for pass := range 3 {
		got, err := os.ReadDir(filepath.Join(mnt, "big"))
		if err != nil {
			t.Fatalf("pass %d: %v", pass, err)
		}
		var names []string
		for _, e := range got {
			names = append(names, e.Name())
		}
		if !slices.Equal(names, want) {
			t.Fatalf("pass %d: %d entries listed, want %d (first %.20q)", pass, len(names), n, names)
		}
	}
	if small, err := os.ReadDir(filepath.Join(mnt, "small")); err != nil || len(small) != 1 || small[0].Name() != "one" {
		t.Errorf("small: %v, %v", small, err)
	}
	// A descriptor read in pieces, rewound, and read again.
	fd, err := os.Open(filepath.Join(mnt, "big"))
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	part, err := fd.Readdirnames(10)
	if err != nil || len(part) != 10 {
		t.Fatalf("first 10 names: %v, %v", part, err)
	}
	if _, err := fd.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	all, err := fd.Readdirnames(-1)
	if err != nil || len(all) != n {
		t.Fatalf("after rewinding: %d names, %v; want %d", len(all), err, n)
	}
	if _, err := os.Lstat(filepath.Join(mnt, "big", want[n-1])); err != nil {
		t.Errorf("an entry the listing gave: %v", err)
	}
}
