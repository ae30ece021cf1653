package unionfs

import (
	"sync"
	"syscall"
	"time"

	"github.com/stratafs/strata/layer"
)

// Feeding the page cache ahead of a scan.
//
// A walk that reads every file lists a directory, then reads its files one
// by one; through FUSE each small file costs a READ round trip even when
// its bytes are local. (A walk of debian-python's 6,641 files through an
// open-less mount took 2.4 s fetching them, 0.23 s again with its page
// cache warm; the full pull it competes with, 1.6-1.9 s in all.) The kernel
// keeps a file's page cache across opens (an open-less mount's always, the
// union's lower files because their opens say FOPEN_KEEP_CACHE), so strata
// can hand a lower file's bytes to the kernel (FUSE_NOTIFY_STORE) before
// they are asked for, and the READs become page-cache hits.
//
// It does so only for a layer that says readers are scanning it (a lazy
// layer that saw its files read one after another in blob order): a
// container start lists directories too, but reads few of their files. The
// files fed are the regular files a lookup (READDIRPLUS looks up every
// entry it lists) makes known to the kernel, small (at most feedMax: the
// kernel reads bigger ones in large requests anyway; in the union also
// below passthroughMin, since a passthrough open bypasses the page cache),
// whose bytes are all local (the layer never fetches for this), not opened
// yet, each once per node; with an upper directory, not hard-linked either
// (a copy-up through another name changes the file). A queue of at most
// feedQueue files is worked through by one goroutine, which ends when it
// is empty. A file that is read before its turn costs its READ as before;
// a feed that lands after the READ stores the same bytes again.
//
// The bytes fed must stay the file's. An open-less mount is read-only. In
// the union a lower file changes only once copied up, and a feed excludes
// the end of a copy-up (feedMu): a feed checks under feedMu that the node
// is not in the upper directory, and a copy-up says it is under feedMu
// (markUpper) before the open or truncate that asked for the copy returns
// to the kernel, so before any write. A feed that began before stores the
// lower bytes, which the copy holds too (or, for a copy-up that truncates,
// pages that the kernel drops once the truncating call returns).

// feeder is what a layer offers for feeding (lazy.Layer does).
type feeder interface {
	// Scanning reports whether readers are scanning the layer now.
	Scanning() bool
	// ReadLocal returns the whole file at path if it is at most max
	// bytes and local, without fetching anything.
	ReadLocal(path string, max int64) ([]byte, bool)
}

const (
	feedMax   = 128 << 10
	feedQueue = 4096
	// The kernel knows a node once it has processed the reply that
	// names it, a moment after the lookup: a feed that comes first gets
	// ENOENT and tries again, after feedRetry, then twice as long each
	// time, feedTries times in all (about 100 ms).
	feedRetry = 100 * time.Microsecond
	feedTries = 10
)

// feedQ holds the nodes waiting to be fed.
type feedQ struct {
	mu      sync.Mutex
	nodes   []*node
	running bool
}

// offerFeed queues a node that a lookup has just made, if it is a small
// lower file of a layer being scanned, not opened yet.
func (n *node) offerFeed() {
	u := n.u
	if n.lower == nil || n.lower.Type != layer.TypeReg || n.lower.Size <= 0 ||
		n.lower.Size > u.feedMax() || n.upper.Load() || n.kfile.Load() != nil {
		return
	}
	if u.upper != nil && (n.lower.Nlink > 1 || n.lsrc != nil) {
		return // hard-linked: a copy-up through another name changes it
	}
	li, _ := n.content()
	if f, ok := u.layers[li].(feeder); !ok || !f.Scanning() {
		return
	}
	if !n.fed.CompareAndSwap(false, true) {
		return
	}
	q := &u.feed
	q.mu.Lock()
	if len(q.nodes) >= feedQueue {
		q.mu.Unlock()
		n.fed.Store(false) // a later lookup may offer it again
		return
	}
	q.nodes = append(q.nodes, n)
	start := !q.running
	q.running = true
	q.mu.Unlock()
	if start {
		go q.run()
	}
}

// run feeds the queued nodes, in order, until the queue is empty.
func (q *feedQ) run() {
	for {
		q.mu.Lock()
		if len(q.nodes) == 0 {
			q.running = false
			q.nodes = nil
			q.mu.Unlock()
			return
		}
		n := q.nodes[0]
		q.nodes[0] = nil
		q.nodes = q.nodes[1:]
		q.mu.Unlock()
		n.feed()
	}
}

// feedMax is the largest file the mount feeds.
func (u *union) feedMax() int64 {
	if !u.opts.openless && u.opts.passthrough {
		return min(feedMax, passthroughMin-1)
	}
	return feedMax
}

// feed hands the node's bytes to the kernel's page cache, if they are
// local, and the node is neither opened nor in the upper directory.
func (n *node) feed() {
	if n.kfile.Load() != nil || n.opened() {
		return // read already: the kernel has the pages
	}
	li, p := n.content()
	f, ok := n.u.layers[li].(feeder)
	if !ok {
		return
	}
	n.feedMu.Lock()
	defer n.feedMu.Unlock()
	if n.upper.Load() {
		return
	}
	data, ok := f.ReadLocal(p, feedMax)
	if !ok || int64(len(data)) != n.lower.Size {
		return
	}
	wait := feedRetry
	for try := 1; ; try++ {
		errno := n.WriteCache(0, data)
		if errno != syscall.ENOENT || try >= feedTries {
			return
		}
		time.Sleep(wait)
		wait *= 2
	}
}

// opened reports whether the node has been opened through strata.
func (n *node) opened() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.io != ioUndecided
}

// markUpper records that the node now lives in the upper directory, once no
// feed of its lower bytes is under way (see above).
func (n *node) markUpper() {
	n.feedMu.Lock()
	n.upper.Store(true)
	n.feedMu.Unlock()
}
