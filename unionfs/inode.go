package unionfs

import "sync"

// upperLayer is the layer index used in inode keys for the upper directory.
const upperLayer = -1

// inoKey names a file: an entry ID inside one lower layer, or an inode
// number of the upper directory's filesystem.
type inoKey struct {
	layer int
	id    uint64
}

// inoTable hands out the inode numbers the kernel sees. A number, once
// given to a key, stays with it for the life of the mount, and numbers are
// never reused, so a file that dies can never be mistaken for a new one.
type inoTable struct {
	mu    sync.Mutex // guards next and byKey
	next  uint64
	byKey map[inoKey]uint64
}

func newInoTable() *inoTable {
	return &inoTable{next: 2, byKey: map[inoKey]uint64{}} // 1 is the root
}

// get returns key's number, assigning a fresh one on first sight.
func (t *inoTable) get(k inoKey) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if ino, ok := t.byKey[k]; ok {
		return ino
	}
	ino := t.next
	t.next++
	t.byKey[k] = ino
	return ino
}

// alias makes k answer ino: a copied-up file keeps its number.
func (t *inoTable) alias(k inoKey, ino uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.byKey[k] = ino
}

// forget drops k: an upper inode number that the filesystem may reuse for a
// new file once the last name of the old one is gone.
func (t *inoTable) forget(k inoKey) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.byKey, k)
}
