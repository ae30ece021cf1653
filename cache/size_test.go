package cache

import "testing"

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"0", 0}, {"4096", 4096}, {"512M", 512 << 20}, {"512m", 512 << 20}, {"10G", 10 << 30},
		{"1.5GiB", 3 << 29}, {"2TB", 2e12}, {"100kB", 100000}, {"1K", 1024}, {"1 GiB", 1 << 30},
		{"0.1K", 102}, {"7B", 7}, {"9223372036854775807", 1<<63 - 1}, {" 3M ", 3 << 20},
	} {
		got, err := ParseSize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "G", "-1", "1.2.3", ".", "10X", "1e9", "0x10", "inf", "NaN",
		"9223372036854775808", "8192P", "1,5G", "10 G B"} {
		if got, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", bad, got)
		}
	}
}
