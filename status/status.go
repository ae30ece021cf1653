package status

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Sentinel errors.
var (
	// ErrNotMounted: no status file for the mountpoint.
	ErrNotMounted = errors.New("status: no strata mount there")
	// ErrStale: a status file whose process no longer runs.
	ErrStale = errors.New("status: stale (the mounting process is gone)")
)

// Layer is what one layer of a mount has done so far.
type Layer struct {
	Name         string `json:"name"`             // digest of a registry layer, directory of a local one
	Format       string `json:"format,omitempty"` // estargz, zstd:chunked, or local
	Size         int64  `json:"size"`             // bytes in the image (compressed blob)
	BytesFetched int64  `json:"bytes_fetched"`    // from the registry
	Requests     int64  `json:"requests"`
	Retries      int64  `json:"retries"`
	BytesServed  int64  `json:"bytes_served"` // file bytes returned to readers
	ChunkHits    int64  `json:"chunk_hits"`
	ChunkFetches int64  `json:"chunk_fetches"`
	Prefetches   int64  `json:"prefetch_windows,omitempty"`
	WholeOpens   int64  `json:"whole_file_opens,omitempty"` // opens served by a whole cached file (passthrough)
	WholePuts    int64  `json:"whole_files_stored,omitempty"`
	BytesFed     int64  `json:"bytes_fed,omitempty"` // file bytes handed to the kernel's page cache ahead of a scan's reads
	Errors       int64  `json:"errors"`
	LastError    string `json:"last_error,omitempty"`
}

// Mount describes one running mount.
type Mount struct {
	Mountpoint string    `json:"mountpoint"`
	Source     string    `json:"source"` // the image, pinned by digest, or "local layers"
	PID        int       `json:"pid"`
	Started    time.Time `json:"started"`
	Updated    time.Time `json:"updated"`
	Layers     []Layer   `json:"layers"`
	Cache      *Cache    `json:"cache,omitempty"` // the on-disk cache, if the mount uses one
	// SharedImage is set on a --kernel-overlay mount of an image that
	// another strata process serves: the image's mount directory, whose
	// counters are that process's.
	SharedImage string `json:"shared_image,omitempty"`
}

// Cache is the on-disk cache as one mount sees it: the cache's size (all
// processes) and this mount's own use of it.
type Cache struct {
	Dir          string `json:"dir"`
	Bytes        int64  `json:"bytes"`   // estimate for the whole cache; -1 until known
	Entries      int64  `json:"entries"` // likewise
	MaxSize      int64  `json:"max_size"`
	Hits         int64  `json:"hits"` // chunk and whole-file reads found in it
	Misses       int64  `json:"misses"`
	Puts         int64  `json:"puts"` // chunks and files this mount stored
	Evictions    int64  `json:"evictions"`
	EvictedBytes int64  `json:"evicted_bytes"`
	Corrupt      int64  `json:"corrupt"` // entries found damaged, removed and fetched again
}

// Dir is the runtime directory for status files.
func Dir() string {
	if d := os.Getenv("STRATA_RUNTIME_DIR"); d != "" {
		return d
	}
	return "/run/strata"
}

// Path is the status file of the mount at mountpoint.
func Path(dir, mountpoint string) (string, error) {
	abs, err := filepath.Abs(mountpoint)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(filepath.Clean(abs)))
	return filepath.Join(dir, hex.EncodeToString(sum[:8])+".json"), nil
}

// Write replaces the status file of m.Mountpoint in dir.
func Write(dir string, m *Mount) error {
	p, err := Path(dir, m.Mountpoint)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("status: %w", err)
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("status: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("status: %w", err)
	}
	return os.Rename(tmp.Name(), p)
}

// Read returns the status of the mount at mountpoint; ErrNotMounted when
// there is none, ErrStale (with the last status) when its process is gone.
func Read(dir, mountpoint string) (*Mount, error) {
	p, err := Path(dir, mountpoint)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", mountpoint, ErrNotMounted)
	}
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	var m Mount
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("status %s: %w", p, err)
	}
	if !alive(m.PID) {
		return &m, fmt.Errorf("%s: pid %d: %w", mountpoint, m.PID, ErrStale)
	}
	return &m, nil
}

// Remove deletes the status file of the mount at mountpoint.
func Remove(dir, mountpoint string) error {
	p, err := Path(dir, mountpoint)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("status: %w", err)
	}
	return nil
}

// Sweep removes from dir the status files whose process is gone (a mount
// killed before it could remove its own) and temporary files of Write
// older than staleTemp, leaving the file of mountpoint (the caller's own)
// and anything that does not parse as a status. It returns how many status
// files it removed. A file is removed only if it still holds what Sweep
// read, so a mount that has just written its status on the same path keeps
// it; a write that lands between that check and the removal is undone,
// and redone by the mount's next write, a second later.
func Sweep(dir, mountpoint string) (int, error) {
	own, err := Path(dir, mountpoint)
	if err != nil {
		return 0, err
	}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	removed := 0
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		switch {
		case p == own || !e.Type().IsRegular():
		case strings.HasPrefix(e.Name(), ".tmp-"):
			if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > staleTemp {
				os.Remove(p)
			}
		case strings.HasSuffix(e.Name(), ".json"):
			if removeStale(p) {
				removed++
			}
		}
	}
	return removed, nil
}

// staleTemp: a Write takes microseconds; its temporary file can only be
// this old if its process died in the middle.
const staleTemp = time.Minute

// removeStale removes the status file at p if its process is gone and the
// file has not changed since it was read.
func removeStale(p string) bool {
	data, err := os.ReadFile(p)
	if err != nil {
		return false
	}
	var m Mount
	if json.Unmarshal(data, &m) != nil || m.PID == 0 || alive(m.PID) {
		return false
	}
	if now, err := os.ReadFile(p); err != nil || !bytes.Equal(now, data) {
		return false
	}
	return os.Remove(p) == nil
}

func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
