package cache

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"testing"
)

// childDirEnv, when set, makes TestChildProcess act as the second process
// of TestTwoProcesses, on the cache directory it names.
const childDirEnv = "STRATA_CACHE_TEST_CHILD_DIR"

// processChunks is how many chunks both processes write and read; about
// 8 MiB in all, enough for their writes and reads to overlap.
const processChunks = 128

// TestTwoProcesses runs a second process on the same cache directory, both
// Putting the same chunks (in opposite orders, so they meet in the middle
// on the same digests) and Getting them while the other writes: every Get
// is right or a miss, and no entry is lost.
func TestTwoProcesses(t *testing.T) {
	s, dir := newStore(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestChildProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), childDirEnv+"="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
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
	// Start together: the child's start-up would otherwise outlast the
	// parent's whole run.
	if _, err := bufio.NewReader(stdout).ReadString('\n'); err != nil {
		t.Fatalf("child never got ready: %v\n%s", err, stderr.String())
	}
	stdin.Close()
	var waitErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(io.Discard, stdout)
		waitErr = cmd.Wait()
	}()
	if err := exercise(s, false, done); err != nil {
		t.Error(err)
	}
	<-done
	if waitErr != nil {
		t.Fatalf("child: %v\n%s", waitErr, stderr.String())
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
