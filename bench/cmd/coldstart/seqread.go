package main

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
	"github.com/stratafs/strata/bench/peers"
)

// The sequential-read scenario: one file of seqSize bytes, about 2:1
// compressible, in a one-layer image. strata reads it cold from a fresh
// mount; curl fetches the blob that holds it, with one GET, as fast as the
// registry sends it. Both move the same content, so their times compare.
const (
	seqSize = 256 << 20
	seqFile = "data/big"
)

// seqImage writes the layer's gzip tar once into the image cache.
func seqImage(dir string) (string, error) {
	p := filepath.Join(dir, "seq-256m.tar.gz")
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	f, err := os.Create(p + ".tmp")
	if err != nil {
		return "", err
	}
	defer f.Close()
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	for _, h := range []*tar.Header{
		{Typeflag: tar.TypeDir, Name: "data/", Mode: 0o755},
		{Typeflag: tar.TypeReg, Name: seqFile, Mode: 0o644, Size: seqSize},
	} {
		h.ModTime = time.Unix(1700000000, 0)
		if err := tw.WriteHeader(h); err != nil {
			return "", err
		}
	}
	if _, err := io.CopyN(tw, halfRandom(), seqSize); err != nil {
		return "", err
	}
	for _, c := range []io.Closer{tw, zw, f} {
		if err := c.Close(); err != nil {
			return "", err
		}
	}
	return p, os.Rename(p+".tmp", p)
}

// halfRandom yields blocks of 32 KiB of random bytes, each followed by a
// copy of itself: data that compresses about 2:1, like binaries do.
func halfRandom() io.Reader {
	r := rand.New(rand.NewPCG(256, 1))
	pr, pw := io.Pipe()
	go func() {
		block := make([]byte, 64<<10)
		for {
			for i := 0; i < len(block)/2; i += 8 {
				v := r.Uint64()
				for k := range 8 {
					block[i+k] = byte(v >> (8 * k))
				}
			}
			copy(block[len(block)/2:], block[:len(block)/2])
			if _, err := pw.Write(block); err != nil {
				return
			}
		}
	}()
	return pr
}

// setupSeq pushes the sequential-read image and converts it to each lazy
// format, recording each tag's blob digest for curl.
func (b *benchmark) setupSeq(ctx context.Context) error {
	tgz, err := seqImage(b.opts.image)
	if err != nil {
		return fmt.Errorf("sequential-read image: %w", err)
	}
	l, err := tarball.LayerFromFile(tgz, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return err
	}
	img, err := mutate.ConfigFile(mutate.MediaType(empty.Image, types.OCIManifestSchema1),
		&v1.ConfigFile{OS: "linux", Architecture: runtime.GOARCH, RootFS: v1.RootFS{Type: "layers"}})
	if err != nil {
		return err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	if img, err = mutate.AppendLayers(img, l); err != nil {
		return err
	}
	repo := b.reg.addr + "/bench/seq"
	r, err := name.ParseReference(repo + ":gzip")
	if err != nil {
		return err
	}
	progress("pushing the %d MiB sequential-read image", seqSize>>20)
	if err := remote.Write(r, img, remote.WithContext(ctx)); err != nil {
		return err
	}
	b.seqRefs, b.seqBlobs = map[string]string{}, map[string]string{}
	for _, sys := range systems[1:] {
		ref := repo + ":" + strings.ReplaceAll(sys, ":", "-")
		if out, err := exec.CommandContext(ctx, b.opts.strata, "convert", "--format", sys, repo+":gzip", ref).CombinedOutput(); err != nil {
			return fmt.Errorf("strata convert --format %s: %v: %s", sys, err, out)
		}
		descs, _, err := layerSizes(ctx, ref)
		if err != nil {
			return err
		}
		b.seqRefs[sys] = ref
		b.seqBlobs[sys] = fmt.Sprintf("http://%s/v2/bench/seq/blobs/%s", b.reg.addr, descs[0].Digest)
		b.note("sequential-read blob "+sys, fmt.Sprintf("%.1f MB for a %d MiB file", mb(descs[0].Size), seqSize>>20))
	}
	return nil
}

// seqRun is one cold sequential read by strata, or one curl of the blob.
type seqRun struct {
	format, system string // system: "strata" or "curl"
	secs           float64
	bytes          int64
	err            error
}

// measureSeq runs, for each lazy format, a curl of the blob and a cold
// read through a fresh strata mount (no cache, no prefetch), interleaved.
func (b *benchmark) measureSeq(ctx context.Context) {
	for i := range b.opts.runs {
		for _, f := range systems[1:] {
			order := []string{"curl", "strata"}
			if i%2 == 1 {
				order = []string{"strata", "curl"}
			}
			for _, sys := range order {
				if ctx.Err() != nil {
					return
				}
				run := seqRun{format: f, system: sys}
				if sys == "curl" {
					run.secs, run.bytes, run.err = curlBlob(ctx, b.seqBlobs[f])
				} else {
					run.secs, run.bytes, run.err = b.strataSeq(ctx, f, i)
				}
				b.seqRuns = append(b.seqRuns, run)
				if run.err != nil {
					progress("seq run %d %s %s FAILED: %v", i+1, f, sys, run.err)
					continue
				}
				progress("seq run %d %-12s %-6s %6.3fs  %7.1f MB/s of %s", i+1, f, sys, run.secs, mb(run.bytes)/run.secs,
					map[string]string{"curl": "blob", "strata": "file"}[sys])
			}
		}
	}
}

// curlBlob fetches url to /dev/null with one GET and returns curl's own
// total time and bytes.
func curlBlob(ctx context.Context, url string) (float64, int64, error) {
	if err := peers.DropCaches(); err != nil {
		return 0, 0, err
	}
	out, err := exec.CommandContext(ctx, "curl", "-sf", "-o", "/dev/null", "-w", "%{time_total} %{size_download}", url).Output()
	if err != nil {
		return 0, 0, fmt.Errorf("curl %s: %w", url, err)
	}
	var secs float64
	var n int64
	if _, err := fmt.Sscan(string(out), &secs, &n); err != nil {
		return 0, 0, fmt.Errorf("curl printed %q: %w", out, err)
	}
	return secs, n, nil
}

// strataSeq mounts the format's image (no cache, no prefetch) and reads the
// file once, front to back, 1 MiB at a time.
func (b *benchmark) strataSeq(ctx context.Context, format string, i int) (float64, int64, error) {
	s := &sysRun{b: b, System: "seq-" + format, Run: i + 1, ref: b.seqRefs[format],
		dir: filepath.Join(b.opts.work, "seq-"+strconv.Itoa(i)+"-"+strings.ReplaceAll(format, ":", "-"))}
	s.mnt = filepath.Join(s.dir, "mnt")
	defer func() {
		for j := len(s.done) - 1; j >= 0; j-- {
			s.done[j]()
		}
		os.RemoveAll(s.dir)
	}()
	os.RemoveAll(s.dir)
	if err := os.MkdirAll(s.mnt, 0o755); err != nil {
		return 0, 0, err
	}
	if err := peers.DropCaches(); err != nil {
		return 0, 0, err
	}
	saved := b.opts
	b.opts.cache, b.opts.mountArgs = false, append(listFlag{"--prefetch", "none"}, saved.mountArgs...)
	err := s.strataMount(ctx)
	b.opts = saved
	if err != nil {
		return 0, 0, err
	}
	f, err := os.Open(filepath.Join(s.mnt, seqFile))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	start := time.Now()
	n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, make([]byte, 1<<20))
	secs := time.Since(start).Seconds()
	if err == nil && n != seqSize {
		err = fmt.Errorf("read %d bytes, want %d", n, seqSize)
	}
	return secs, n, err
}

// seqRow is one format's sequential-read result.
type seqRow struct {
	Format       string  `json:"format"`
	StrataS      summary `json:"strata_s"`
	CurlS        summary `json:"curl_s"`
	FileBytes    int64   `json:"file_bytes"`
	BlobBytes    int64   `json:"blob_bytes"`
	TimeRatio    float64 `json:"time_ratio,omitempty"` // strata median / curl median
	Errors       int     `json:"errors,omitempty"`
	StrataMBps   float64 `json:"strata_mb_per_s,omitempty"`
	CurlBlobMBps float64 `json:"curl_blob_mb_per_s,omitempty"`
}

func (b *benchmark) seqRows() []seqRow {
	var rows []seqRow
	for _, f := range systems[1:] {
		row := seqRow{Format: f, FileBytes: seqSize}
		var st, ct []float64
		for _, r := range b.seqRuns {
			switch {
			case r.format != f:
			case r.err != nil:
				row.Errors++
			case r.system == "strata":
				st = append(st, r.secs)
			default:
				ct = append(ct, r.secs)
				row.BlobBytes = r.bytes
			}
		}
		row.StrataS, row.CurlS = summarize(st), summarize(ct)
		if row.StrataS.Runs > 0 && row.CurlS.Runs > 0 {
			row.TimeRatio = row.StrataS.Median / row.CurlS.Median
			row.StrataMBps = mb(row.FileBytes) / row.StrataS.Median
			row.CurlBlobMBps = mb(row.BlobBytes) / row.CurlS.Median
		}
		rows = append(rows, row)
	}
	return rows
}

func seqMarkdown(rows []seqRow) string {
	if len(rows) == 0 {
		return ""
	}
	var sb strings.Builder
	sb.WriteString("\nCold sequential read of a 256 MiB file (about 2:1 compressible), medians (min–max): strata reads it " +
		"1 MiB at a time from a fresh mount (no cache, no prefetch); curl GETs the blob that holds it, once. " +
		"Both move the same content, so the target (strata at ≥ 0.5x curl's rate) is a time ratio ≤ 2.\n\n")
	sb.WriteString("| format | strata | curl (blob) | strata / curl (time) | strata rate (file) | curl rate (blob) | target |\n")
	sb.WriteString("| --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range rows {
		verdict := "no data"
		if r.TimeRatio > 0 {
			verdict = "pass"
			if r.TimeRatio > 2 {
				verdict = "FAIL"
			}
		}
		fmt.Fprintf(&sb, "| %s | %s | %s | %.2f | %.0f MB/s | %.0f MB/s | %s |\n", r.Format, secRange(r.StrataS), secRange(r.CurlS),
			r.TimeRatio, r.StrataMBps, r.CurlBlobMBps, verdict)
	}
	return sb.String()
}

func secRange(s summary) string {
	if s.Runs == 0 {
		return "–"
	}
	return fmt.Sprintf("%.3f s (%.3f–%.3f)", s.Median, s.Min, s.Max)
}
