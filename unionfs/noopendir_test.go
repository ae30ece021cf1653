package unionfs

import (
	"sync"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// countingRaw is a raw file system whose directories list n entries
// wherever a read starts, counting the handles opened and released and
// the reads that came with no handle or with one already released.
type countingRaw struct {
	fuse.RawFileSystem
	n uint64

	mu                  sync.Mutex
	opened, released    int
	readsNoFh, readsBad int
	gone                map[uint64]bool
}

func (c *countingRaw) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.opened++
	out.Fh = uint64(100 + c.opened)
	return fuse.OK
}

func (c *countingRaw) ReleaseDir(in *fuse.ReleaseIn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.released++
	if c.gone == nil {
		c.gone = map[uint64]bool{}
	}
	c.gone[in.Fh] = true
}

func (c *countingRaw) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	c.mu.Lock()
	switch {
	case in.Fh == 0:
		c.readsNoFh++
	case c.gone[in.Fh]:
		c.readsBad++
	}
	c.mu.Unlock()
	for off := in.Offset; off < c.n && off < in.Offset+10; off++ {
		out.AddDirEntry(fuse.DirEntry{Name: "e", Mode: fuse.S_IFREG, Ino: off + 2, Off: off + 1})
	}
	return fuse.OK
}

// readPage reads one page of directory 2's listing at off, as the kernel
// does with no handle, and reports whether it held entries.
func readPage(t *testing.T, n *noOpendir, off uint64) bool {
	t.Helper()
	out := fuse.NewDirEntryList(make([]byte, 4096), off)
	if st := n.ReadDirPlus(nil, &fuse.ReadIn{InHeader: fuse.InHeader{NodeId: 2}, Offset: off}, out); !st.Ok() {
		t.Errorf("READDIRPLUS at %d: %v", off, st)
		return false
	}
	return out.Offset != off
}

// TestNoOpendirKeepsHandle: the page-by-page reads of one listing share one
// handle (opening one lists the whole directory), which is released at the
// end of the listing; the inner file system never sees a read without a
// handle, nor an OPENDIR from the kernel.
func TestNoOpendirKeepsHandle(t *testing.T) {
	inner := &countingRaw{RawFileSystem: fuse.NewDefaultRawFileSystem(), n: 35}
	n := newNoOpendir(inner)
	if st := n.OpenDir(nil, &fuse.OpenIn{InHeader: fuse.InHeader{NodeId: 2}}, &fuse.OpenOut{}); st != fuse.ENOSYS {
		t.Fatalf("OPENDIR = %v, want ENOSYS", st)
	}
	for listing := range 2 {
		for off := uint64(0); readPage(t, n, off); off += 10 {
		}
		if inner.opened != listing+1 || inner.released != listing+1 {
			t.Errorf("after listing %d: %d handles opened, %d released; want %d each", listing, inner.opened, inner.released, listing+1)
		}
	}
	if inner.readsNoFh != 0 {
		t.Errorf("%d reads reached the file system without a handle", inner.readsNoFh)
	}
}

// TestNoOpendirConcurrentListings: listings of one directory that overlap
// (two readers, one ending while the other is midway) never read through a
// handle already released, and every handle opened is released.
func TestNoOpendirConcurrentListings(t *testing.T) {
	inner := &countingRaw{RawFileSystem: fuse.NewDefaultRawFileSystem(), n: 95}
	n := newNoOpendir(inner)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				for off := uint64(0); readPage(t, n, off); off += 10 {
				}
			}
		})
	}
	wg.Wait()
	if inner.readsBad != 0 || inner.readsNoFh != 0 {
		t.Errorf("%d reads through a released handle, %d without one", inner.readsBad, inner.readsNoFh)
	}
	if inner.opened != inner.released || len(n.open) != 0 {
		t.Errorf("%d handles opened, %d released, %d still kept", inner.opened, inner.released, len(n.open))
	}
}
