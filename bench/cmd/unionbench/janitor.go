package main

import (
	"sync"
)

// janitor owns every mount and server process the benchmark starts. Each
// teardown is registered as soon as its resource exists and runs exactly
// once: either when the benchmark is done with it, or from runAll, which
// main defers so that an error, a signal or a panic still unmounts all.
type janitor struct {
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
func (j *janitor) add(fn func() error) func() error {
	t := &task{fn: fn}
	j.mu.Lock()
	j.tasks = append(j.tasks, t)
	j.mu.Unlock()
	return func() error {
		t.once.Do(func() { t.err = t.fn() })
		return t.err
	}
}

// runAll tears down whatever is still up, newest first.
func (j *janitor) runAll() {
	j.mu.Lock()
	tasks := j.tasks
	j.tasks = nil
	j.mu.Unlock()
	for i := len(tasks) - 1; i >= 0; i-- {
		t, ran := tasks[i], false
		t.once.Do(func() { t.err, ran = t.fn(), true })
		if ran && t.err != nil {
			progress("cleanup: %v", t.err)
		}
	}
}
