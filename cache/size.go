package cache

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// sizeUnits maps a unit suffix, lowercased, to its multiplier: the
// one-letter and IEC forms are powers of 1024, the SI forms powers of 1000,
// as GNU coreutils reads them.
var sizeUnits = map[string]float64{
	"": 1, "b": 1,
	"k": 1 << 10, "kib": 1 << 10, "kb": 1e3,
	"m": 1 << 20, "mib": 1 << 20, "mb": 1e6,
	"g": 1 << 30, "gib": 1 << 30, "gb": 1e9,
	"t": 1 << 40, "tib": 1 << 40, "tb": 1e12,
	"p": 1 << 50, "pib": 1 << 50, "pb": 1e15,
}

// ParseSize reads a byte count such as 4096, 512M, 10G, 1.5GiB or 2TB:
// digits, an optional fraction, and an optional unit (case does not
// matter). A fractional result is rounded down to whole bytes.
func ParseSize(s string) (int64, error) {
	num := strings.TrimSpace(s)
	i := strings.IndexFunc(num, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	unit := ""
	if i >= 0 {
		num, unit = num[:i], strings.ToLower(strings.TrimSpace(num[i:]))
	}
	mult, ok := sizeUnits[unit]
	if num == "" || strings.Count(num, ".") > 1 || num == "." || !ok {
		return 0, fmt.Errorf("size %q: want a number of bytes with an optional unit, such as 4096, 512M, 10G, 1.5GiB", s)
	}
	if !strings.Contains(num, ".") && mult == 1 {
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("size %q: too large", s)
		}
		return n, nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	v := math.Floor(f * mult)
	if v >= math.MaxInt64 {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	return int64(v), nil
}
