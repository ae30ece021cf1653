package netshape

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// ErrBadLink is returned for a link that cannot be modelled (a negative
// RTT or rate) or a link name ParseLink does not understand.
var ErrBadLink = errors.New("netshape: bad link")

// Link is the network path the relay imitates between a client and a
// server.
type Link struct {
	// Name labels the link in reports ("100M20ms"); empty for an ad hoc link.
	Name string
	// RTT is the round-trip time the link adds: each direction delays every
	// byte by RTT/2. Zero adds no delay.
	RTT time.Duration
	// Rate is the link's capacity in bits per second, per direction,
	// shared by every connection through the relay. It counts payload
	// bytes, not TCP/IP headers, so it is the goodput a perfectly used
	// link of that rate would give. Zero means unlimited.
	Rate int64
}

// The links the benchmarks compare. Loopback still goes through the relay,
// which then copies each direction as it comes (no delay line), so that
// every system pays the same small copying cost and the registry's byte
// count is still the relay's.
var (
	Loopback     = Link{Name: "loopback"}
	Link100M20ms = Link{Name: "100M20ms", RTT: 20 * time.Millisecond, Rate: 100_000_000}
	Link1G2ms    = Link{Name: "1G2ms", RTT: 2 * time.Millisecond, Rate: 1_000_000_000}
)

// Links lists the predefined links, slowest first.
func Links() []Link { return []Link{Link100M20ms, Link1G2ms, Loopback} }

// linkSpec is RATE[K|M|G] followed by a Go duration: "100M20ms", "1.5G500us".
var linkSpec = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)([KMG])(.+)$`)

// ParseLink returns the predefined link of that name ("loopback",
// "100M20ms", "1G2ms") or, for any other name of the form RATE{K,M,G}RTT
// ("50M30ms", "10G100us"), an ad hoc link with that rate in bits per second
// and that round-trip time.
func ParseLink(s string) (Link, error) {
	for _, l := range Links() {
		if strings.EqualFold(s, l.Name) {
			return l, nil
		}
	}
	m := linkSpec.FindStringSubmatch(s)
	if m == nil {
		return Link{}, fmt.Errorf("%w: %q: want loopback or RATE{K,M,G}RTT, e.g. 100M20ms", ErrBadLink, s)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return Link{}, fmt.Errorf("%w: %q: %v", ErrBadLink, s, err)
	}
	rtt, err := time.ParseDuration(m[3])
	if err != nil {
		return Link{}, fmt.Errorf("%w: %q: %v", ErrBadLink, s, err)
	}
	unit := map[string]float64{"K": 1e3, "M": 1e6, "G": 1e9}[m[2]]
	l := Link{Name: s, RTT: rtt, Rate: int64(v * unit)}
	return l, l.validate()
}

func (l Link) validate() error {
	if l.RTT < 0 || l.Rate < 0 {
		return fmt.Errorf("%w: RTT %v and rate %d b/s must not be negative", ErrBadLink, l.RTT, l.Rate)
	}
	return nil
}

// String is the link's name, or its rate and RTT.
func (l Link) String() string {
	if l.Name != "" {
		return l.Name
	}
	return fmt.Sprintf("%s/%v", FormatRate(l.Rate), l.RTT)
}

// FormatRate writes bits per second the way links are named: "100 Mbit/s";
// zero is "unlimited".
func FormatRate(bps int64) string {
	switch {
	case bps == 0:
		return "unlimited"
	case bps >= 1e9:
		return strconv.FormatFloat(float64(bps)/1e9, 'f', -1, 64) + " Gbit/s"
	case bps >= 1e6:
		return strconv.FormatFloat(float64(bps)/1e6, 'f', -1, 64) + " Mbit/s"
	default:
		return strconv.FormatFloat(float64(bps)/1e3, 'f', -1, 64) + " kbit/s"
	}
}

// oneWay is the delay each direction adds to every byte.
func (l Link) oneWay() time.Duration { return l.RTT / 2 }

// bytesPerSec is the rate in bytes per second, 0 for unlimited.
func (l Link) bytesPerSec() float64 { return float64(l.Rate) / 8 }

// defaultQueue sizes one direction's buffer in one connection. A
// connection can only have as many bytes on the link as it buffers, so
// throughput ≤ queue / one-way delay; twice the bandwidth-delay product
// keeps the link full with room for timer slop. With no rate limit there
// is no product: 1 MiB gives ≥ 100 MB/s up to 10 ms one way.
func (l Link) defaultQueue() int {
	const floor, noRate = 256 << 10, 1 << 20
	switch {
	case l.Rate == 0 && l.RTT > 0:
		return noRate
	case l.Rate == 0:
		return floor
	}
	bdp := int(l.bytesPerSec() * l.oneWay().Seconds())
	return max(floor, 2*bdp)
}
