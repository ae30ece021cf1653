package unionfs

import (
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// countingRaw is a raw file system whose directories list n entries
// wherever a read starts, counting the handles opened and released.
type countingRaw struct {
	fuse.RawFileSystem
	n                           uint64
	opened, released, readsNoFh int
}

func (c *countingRaw) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	c.opened++
	out.Fh = uint64(100 + c.opened)
	return fuse.OK
}

func (c *countingRaw) ReleaseDir(in *fuse.ReleaseIn) { c.released++ }

func (c *countingRaw) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	if in.Fh == 0 {
		c.readsNoFh++
	}
	for off := in.Offset; off < c.n && off < in.Offset+10; off++ {
		out.AddDirEntry(fuse.DirEntry{Name: "e", Mode: fuse.S_IFREG, Ino: off + 2, Off: off + 1})
	}
	return fuse.OK
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
		for off := uint64(0); ; off += 10 {
			out := fuse.NewDirEntryList(make([]byte, 4096), off)
			in := &fuse.ReadIn{InHeader: fuse.InHeader{NodeId: 2}, Offset: off}
			if st := n.ReadDirPlus(nil, in, out); !st.Ok() {
				t.Fatalf("READDIRPLUS at %d: %v", off, st)
			}
			if out.Offset == off {
				break // the end
			}
		}
		if inner.opened != listing+1 || inner.released != listing+1 {
			t.Errorf("after listing %d: %d handles opened, %d released; want %d each", listing, inner.opened, inner.released, listing+1)
		}
	}
	if inner.readsNoFh != 0 {
		t.Errorf("%d reads reached the file system without a handle", inner.readsNoFh)
	}
}
