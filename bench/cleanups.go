package bench

import "sync"

// Cleanups owns every mount and process a benchmark starts. Each teardown
// is registered as soon as its resource exists and runs exactly once:
// either when the benchmark is done with it, or from RunAll, which the
// benchmark defers so that an error, a signal or a panic still unmounts
// everything.
type Cleanups struct {
	mu    sync.Mutex // guards tasks
	tasks []*cleanupTask
}

type cleanupTask struct {
	once sync.Once
	fn   func() error
	err  error
}

// Add registers fn and returns the function that runs it now; later calls
// of either return the first result.
func (c *Cleanups) Add(fn func() error) func() error {
	t := &cleanupTask{fn: fn}
	c.mu.Lock()
	c.tasks = append(c.tasks, t)
	c.mu.Unlock()
	return func() error {
		t.once.Do(func() { t.err = t.fn() })
		return t.err
	}
}

// RunAll tears down whatever is still up, newest first, and reports each
// failure through logf.
func (c *Cleanups) RunAll(logf func(format string, args ...any)) {
	c.mu.Lock()
	tasks := c.tasks
	c.tasks = nil
	c.mu.Unlock()
	for i := len(tasks) - 1; i >= 0; i-- {
		t, ran := tasks[i], false
		t.once.Do(func() { t.err, ran = t.fn(), true })
		if ran && t.err != nil {
			logf("cleanup: %v", t.err)
		}
	}
}
