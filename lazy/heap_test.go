package lazy

import (
	"bufio"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

// TestHugeHeap checks that after AdviseHugeHeap the heap's next large allocation
// lands in memory advised for huge pages, and that it holds what is written
// to it (the advice must change nothing but the page size). It runs in a
// fresh process, as strata calls it at start: the heap of a test binary
// that other tests have used has free space elsewhere.
func TestHugeHeap(t *testing.T) {
	if os.Getenv(hugeHeapChild) == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHugeHeap$", "-test.count=1")
		cmd.Env = append(os.Environ(), hugeHeapChild+"=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("the check in a fresh process: %v\n%s", err, out)
		}
		return
	}
	// The advice is recorded on the mapping (VmFlags "hg") where the
	// kernel has THP; Debian's runs it in madvise mode.
	if _, err := os.Stat("/sys/kernel/mm/transparent_hugepage/enabled"); err != nil {
		t.Fatalf("this test needs a kernel with transparent huge pages: %v", err)
	}
	AdviseHugeHeap()
	buf := make([]byte, 64<<20)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	addr := uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
	flags := vmaFlags(t, addr+uintptr(len(buf))/2)
	if !strings.Contains(" "+flags+" ", " hg ") {
		t.Errorf("the allocation after AdviseHugeHeap lies in a mapping without MADV_HUGEPAGE (VmFlags: %s)", flags)
	}
	for i := range buf {
		if buf[i] != byte(i*7) {
			t.Fatalf("byte %d: got %d, want %d", i, buf[i], byte(i*7))
		}
	}
}

// hugeHeapChild marks the process TestHugeHeap runs its check in.
const hugeHeapChild = "STRATA_TEST_HUGEHEAP_CHILD"

// vmaFlags returns the VmFlags of the mapping of /proc/self/smaps that
// holds addr.
func vmaFlags(t *testing.T, addr uintptr) string {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if rng, _, ok := strings.Cut(line, " "); ok && strings.Contains(rng, "-") && !strings.HasSuffix(rng, ":") {
			lo, hi, _ := strings.Cut(rng, "-")
			a, err1 := strconv.ParseUint(lo, 16, 64)
			b, err2 := strconv.ParseUint(hi, 16, 64)
			in = err1 == nil && err2 == nil && uint64(addr) >= a && uint64(addr) < b
			continue
		}
		if flags, ok := strings.CutPrefix(line, "VmFlags:"); ok && in {
			return strings.TrimSpace(flags)
		}
	}
	t.Fatalf("no mapping of /proc/self/smaps holds %#x", addr)
	return ""
}
