package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/stratafs/strata/status"
)

// strataMount starts `strata mount --upper U REF MNT` and returns once the
// mount shows in mountinfo: the image's TOCs have been fetched by then.
func (s *sysRun) strataMount(ctx context.Context) error {
	upper := filepath.Join(s.dir, "upper")
	if err := os.MkdirAll(upper, 0o755); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(s.dir, "strata.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	args := []string{"mount", "--upper", upper}
	if s.b.opts.cache {
		args = append(args, "--cache", filepath.Join(s.dir, "cache"))
	}
	args = append(args, s.b.opts.mountArgs...)
	cmd := exec.Command(s.b.opts.strata, append(args, s.ref, s.mnt)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	s.teardown(func() error { return stopStrata(s.b.opts.strata, s.mnt, cmd.Process, done) })
	return s.waitMounted(ctx, done)
}

func (s *sysRun) waitMounted(ctx context.Context, done chan error) error {
	for fsType(s.mnt) != "fuse.strata" {
		select {
		case err := <-done:
			done <- err
			log, _ := os.ReadFile(filepath.Join(s.dir, "strata.log"))
			return fmt.Errorf("strata mount exited before the mount appeared (%v): %s", err, log)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
	s.ready = time.Since(s.start)
	return nil
}

// stopStrata unmounts with `strata umount` and waits for the mounting
// process (by its PID) to exit 0; SIGTERM, SIGKILL and a forced unmount
// follow if it does not.
func stopStrata(bin, mnt string, p *os.Process, done chan error) error {
	var errs []error
	if fsType(mnt) != "" {
		if out, err := exec.Command(bin, "umount", mnt).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("strata umount: %v: %s", err, out))
		}
	}
	select {
	case err := <-done:
		errs = append(errs, err)
	case <-time.After(10 * time.Second):
		p.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			errs = append(errs, fmt.Errorf("strata mount needed SIGTERM: %v", err))
		case <-time.After(5 * time.Second):
			p.Kill()
			errs = append(errs, fmt.Errorf("strata mount pid %d killed: %v", p.Pid, <-done))
		}
	}
	if fsType(mnt) != "" {
		errs = append(errs, unmount(mnt))
	}
	return errors.Join(errs...)
}

// strataStat sums the mount's own account over its layers. The mounting
// process refreshes it every second, so it is read after one refresh.
func (s *sysRun) strataStat(ctx context.Context) error {
	time.Sleep(1100 * time.Millisecond)
	out, err := exec.CommandContext(ctx, s.b.opts.strata, "stat", "--json", s.mnt).Output()
	if err != nil {
		return fmt.Errorf("strata stat: %w", err)
	}
	var m status.Mount
	if err := json.Unmarshal(out, &m); err != nil {
		return fmt.Errorf("strata stat --json: %w", err)
	}
	for _, l := range m.Layers {
		s.fetched += l.BytesFetched
		s.served += l.BytesServed
		s.requests += l.Requests
	}
	return nil
}
