package suite

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/stratafs/strata/bench/netshape"
)

// LinkCheck is curl's view of one link in this session: a full GET of the
// cold image's largest blob, and a 64 KiB Range GET of it, through the
// link's relay (netshape.Fetch), medians of the suite's runs (at least 3).
type LinkCheck struct {
	Link    string  `json:"link"`
	Request string  `json:"request"`
	Bytes   int64   `json:"bytes"`
	SetRTT  float64 `json:"set_rtt_s"`
	SetRate int64   `json:"set_rate_bps"`
	TTFB    *Spread `json:"ttfb_s,omitempty"`
	Total   *Spread `json:"total_s,omitempty"`
	// Rate is bytes over the median total time, in bits per second.
	Rate   float64  `json:"measured_rate_bps,omitempty"`
	Errors []string `json:"errors,omitempty"`
}

const rangeCheck = 64 << 10

func (r *runner) checkLinks(ctx context.Context) error {
	curl, err := netshape.EnsureCurl(ctx)
	if err != nil {
		return err
	}
	r.res.Machine.Tools["curl"] = netshape.CurlVersion(ctx, curl)
	url, size, err := r.largestBlob(ctx)
	if err != nil {
		return err
	}
	runs := max(r.o.Runs, 3)
	for _, l := range r.links {
		base := netshape.Fetch{URL: url, Origin: r.reg.Host, Via: l.relay.Addr()}
		full, rng := base, base
		full.Full, full.N, full.WantCode = true, size, 200
		rng.Off, rng.N, rng.WantCode = size/2/4096*4096, min(rangeCheck, size), 206
		for _, f := range []netshape.Fetch{full, rng} {
			c := &LinkCheck{Link: l.link.String(), Bytes: f.N, SetRTT: l.link.RTT.Seconds(), SetRate: l.link.Rate,
				Request: fmt.Sprintf("GET %.1f MB blob", float64(size)/1e6)}
			if !f.Full {
				c.Request = "Range GET 64 KiB"
			}
			var ttfb, total []float64
			for range runs {
				t, err := f.Run(ctx, curl)
				if err != nil {
					c.Errors = append(c.Errors, err.Error())
					continue
				}
				ttfb, total = append(ttfb, t.TTFB), append(total, t.Total)
			}
			c.TTFB, c.Total = spread(ttfb), spread(total)
			if c.Total != nil && c.Total.Median > 0 {
				c.Rate = float64(c.Bytes) * 8 / c.Total.Median
			}
			r.logf("link check %s %s: ttfb %v total %v", c.Link, c.Request, ttfb, total)
			r.res.LinkChecks = append(r.res.LinkChecks, c)
		}
	}
	return nil
}

// largestBlob is the URL (on the registry itself) and size of the cold
// image's largest gzip layer.
func (r *runner) largestBlob(ctx context.Context) (string, int64, error) {
	ref, err := name.ParseReference(r.reg.Ref(r.cold.Name+":gzip"), name.Insecure)
	if err != nil {
		return "", 0, err
	}
	img, err := remote.Image(ref, remote.WithContext(ctx))
	if err != nil {
		return "", 0, fmt.Errorf("suite: read %s back: %w", ref, err)
	}
	m, err := img.Manifest()
	if err != nil {
		return "", 0, err
	}
	best := -1
	for i, l := range m.Layers {
		if best < 0 || l.Size > m.Layers[best].Size {
			best = i
		}
	}
	if best < 0 {
		return "", 0, fmt.Errorf("suite: %s has no layers", ref)
	}
	d := m.Layers[best]
	return fmt.Sprintf("%s/v2/%s/blobs/%s", r.reg.URL, r.cold.Name, d.Digest), d.Size, nil
}
