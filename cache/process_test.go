package cache

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"testing"
	"time"
)

// childDirEnv, when set, makes TestChildProcess act as the second process
// of TestTwoProcesses, on the cache directory it names.
const childDirEnv = "STRATA_CACHE_TEST_CHILD_DIR"

// childCapEnv, set beside childDirEnv, makes the child act as the second
// process of TestTwoProcessesCapped instead.
const childCapEnv = "STRATA_CACHE_TEST_CHILD_CAPPED"

// processChunks is how many chunks both processes write and read; about
// 8 MiB in all, enough for their writes and reads to overlap.
const processChunks = 128

// TestTwoProcesses runs a second process on the same cache directory, both
// Putting the same chunks (in opposite orders, so they meet in the middle
// on the same digests) and Getting them while the other writes: every Get
// is right or a miss, and no entry is lost.
func TestTwoProcesses(t *testing.T) {
	s, dir := newStore(t)
	c := startChild(t, childDirEnv+"="+dir)
	if err := exercise(s, false, c.done); err != nil {
		t.Error(err)
	}
	<-c.done
	if c.err != nil {
		t.Fatalf("child: %v\n%s", c.err, c.stderr.String())
	}
	if err := checkAll(s); err != nil {
		t.Error(err)
	}
	t.Logf("parent %+v", s.Stats())
	if left := tmpEntries(t, dir); len(left) != 0 {
		t.Errorf("temp files left: %v", left)
	}
}

// TestChildProcess is the second process of TestTwoProcesses; run any
// other way, it has nothing to do.
func TestChildProcess(t *testing.T) {
	dir := os.Getenv(childDirEnv)
	if dir == "" {
		return
	}
	if os.Getenv(childCapEnv) != "" {
		cappedChild(t, dir)
		return
	}
	s, err := Open(dir, WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin) // the parent closes it to say go
	if err := exercise(s, true, nil); err != nil {
		t.Fatal(err)
	}
	if err := checkAll(s); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Corrupt+st.Errors+st.Rejected != 0 {
		t.Fatalf("child %+v", st)
	}
}

// exercise Puts every chunk, Getting the one at the other end of the list
// after each Put, then keeps Getting all of them until stop is closed (or
// for one round if stop is nil). It fails on any wrong byte.
func exercise(s *Store, reverse bool, stop <-chan struct{}) error {
	for i := range processChunks {
		put, get := i, processChunks-1-i
		if reverse {
			put, get = get, put
		}
		data, d := chunk(put)
		s.Put(d, data)
		if err := checkOne(s, get, false); err != nil {
			return err
		}
	}
	for {
		for i := range processChunks {
			if err := checkOne(s, i, false); err != nil {
				return err
			}
		}
		select {
		case <-stop:
			return nil
		default:
			if stop == nil {
				return nil
			}
		}
	}
}

func checkAll(s *Store) error {
	for i := range processChunks {
		if err := checkOne(s, i, true); err != nil {
			return err
		}
	}
	return nil
}

func checkOne(s *Store, i int, mustHit bool) error {
	data, d := chunk(i)
	got, ok := s.Get(d)
	switch {
	case ok && !bytes.Equal(got, data):
		return fmt.Errorf("chunk %d: Get returned %d wrong bytes", i, len(got))
	case !ok && mustHit:
		return fmt.Errorf("chunk %d: lost", i)
	}
	return nil
}

// child is a second test process running TestChildProcess.
type child struct {
	done   chan struct{} // closed when it has exited
	err    error         // its exit status, once done is closed
	out    bytes.Buffer  // what it printed after "ready", once done is closed
	stderr bytes.Buffer
}

// startChild starts the child with env added, waits until it is ready,
// and lets it go: both processes then start their work together (the
// child's start-up would otherwise outlast the parent's whole run).
func startChild(t *testing.T, env ...string) *child {
	t.Helper()
	c := &child{done: make(chan struct{})}
	cmd := exec.Command(os.Args[0], "-test.run=^TestChildProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = &c.stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(stdout)
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatalf("child never got ready: %v\n%s", err, c.stderr.String())
	}
	stdin.Close()
	go func() {
		defer close(c.done)
		io.Copy(&c.out, r)
		c.err = cmd.Wait()
	}()
	return c
}

// cappedMax is the cap of TestTwoProcessesCapped: an eighth of the
// cappedChunks chunks both processes write (about 16 MiB).
const (
	cappedMax    = 2 << 20
	cappedChunks = 256
)

// TestTwoProcessesCapped: two processes fill the same small-capped cache
// at once, each evicting in its own goroutine: every Get is right or a
// miss, nothing is corrupt, and after both finish one GC holds the cap.
func TestTwoProcessesCapped(t *testing.T) {
	s, dir := newStore(t, WithMaxSize(cappedMax))
	c := startChild(t, childDirEnv+"="+dir, childCapEnv+"=1")
	if err := fillCapped(s, false); err != nil {
		t.Error(err)
	}
	<-c.done
	if c.err != nil {
		t.Fatalf("child: %v\n%s", c.err, c.stderr.String())
	}
	s.Close()
	var childEvictions int64
	if _, err := fmt.Sscanf(c.out.String(), "evictions %d", &childEvictions); err != nil {
		t.Fatalf("child said %q: %v", c.out.String(), err)
	}
	time.Sleep(2 * freshMargin) // let the last entries age out of the fresh window
	res, err := s.GC(t.Context(), GCOptions{MaxSize: cappedMax})
	if err != nil {
		t.Fatal(err)
	}
	if got := res.After.Total().Bytes; got > cappedMax {
		t.Errorf("after GC the cache holds %d bytes, cap %d", got, cappedMax)
	}
	vres, err := s.GC(t.Context(), GCOptions{Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	if vres.Corrupt != 0 || vres.After != res.After {
		t.Errorf("verify after GC = %+v, GC left %+v", vres, res.After)
	}
	st := s.Stats()
	if st.Corrupt+st.Errors+st.Rejected != 0 || st.Bytes != res.After.Total().Bytes {
		t.Errorf("parent %+v", st)
	}
	if st.Evictions-res.Evicted+childEvictions == 0 {
		t.Error("neither process evicted anything while they ran")
	}
	t.Logf("parent evicted %d while running, child %d, GC %d", st.Evictions-res.Evicted, childEvictions, res.Evicted)
	if left := tmpEntries(t, dir); len(left) != 0 {
		t.Errorf("temp files left: %v", left)
	}
}

// cappedChild is the second process of TestTwoProcessesCapped. Before it
// exits it sweeps once more, as its goroutine would on its next check, so
// that what it reports evicting does not depend on timing.
func cappedChild(t *testing.T, dir string) {
	s, err := Open(dir, WithLogger(testLogger(t)), WithMaxSize(cappedMax))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	if err := fillCapped(s, true); err != nil {
		t.Fatal(err)
	}
	s.Close()
	time.Sleep(2 * freshMargin)
	s.check(t.Context())
	st := s.Stats()
	if st.Corrupt+st.Errors+st.Rejected != 0 {
		t.Fatalf("child %+v", st)
	}
	fmt.Printf("evictions %d\n", st.Evictions)
}

// fillCapped Puts every chunk, in opposite orders in the two processes,
// Getting an earlier one after each Put, then Gets them all: every Get
// must be right or a miss (eviction may have taken anything).
func fillCapped(s *Store, reverse bool) error {
	seed := uint64(1)
	if reverse {
		seed = 2
	}
	r := rand.New(rand.NewPCG(seed, 3))
	for i := range cappedChunks {
		put := i
		if reverse {
			put = cappedChunks - 1 - i
		}
		data, d := chunk(put)
		s.Put(d, data)
		if err := checkOne(s, r.IntN(cappedChunks), false); err != nil {
			return err
		}
	}
	for i := range cappedChunks {
		if err := checkOne(s, i, false); err != nil {
			return err
		}
	}
	return nil
}
