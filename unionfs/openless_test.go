package unionfs

import (
	"context"
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
