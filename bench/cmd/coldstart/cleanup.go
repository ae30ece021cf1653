package main

import "sync"

// cleanups owns every mount and process the benchmark starts. Each
// teardown is registered as soon as its resource exists and runs once:
// when the benchmark is done with it, or from runAll, which run defers so
// an error, a signal or a panic still unmounts everything.
type cleanups struct {
	mu    sync.Mutex // guards tasks
	tasks []*task
}

type task struct {
	once sync.Once
	fn   func() error
	err  error
}

// add registers fn and returns the function that runs it now; later calls
// of either return the first result.
func (c *cleanups) add(fn func() error) func() error {
	t := &task{fn: fn}
	c.mu.Lock()
	c.tasks = append(c.tasks, t)
	c.mu.Unlock()
	return func() error {
		t.once.Do(func() { t.err = t.fn() })
		return t.err
	}
}

// runAll tears down whatever is still up, newest first.
func (c *cleanups) runAll() {
	c.mu.Lock()
	tasks := c.tasks
	c.tasks = nil
	c.mu.Unlock()
	for i := len(tasks) - 1; i >= 0; i-- {
		t, ran := tasks[i], false
		t.once.Do(func() { t.err, ran = t.fn(), true })
		if ran && t.err != nil {
			progress("cleanup: %v", t.err)
		}
	}
}
