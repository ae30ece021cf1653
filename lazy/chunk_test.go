package lazy

import (
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
)

// TestParseDigest: the fast path accepts exactly what digest.Parse
// accepts, and gives the same digest.
func TestParseDigest(t *testing.T) {
	hex := strings.Repeat("0123456789abcdef", 4)
	for _, s := range []string{
		"sha256:" + hex,
		"sha256:" + strings.ToUpper(hex),
		"sha256:" + hex[:63],
		"sha256:" + hex + "0",
		"sha256:" + hex[:63] + "g",
		"sha256:" + hex[:63] + "/",
		"sha256:../" + hex[:61],
		"SHA256:" + hex,
		"sha512:" + hex + hex,
		"sha384:" + hex,
		"md5:" + hex[:32],
		"",
		"sha256:",
		hex,
	} {
		want, werr := digest.Parse(s)
		got, err := parseDigest(s)
		if got != want || (err == nil) != (werr == nil) {
			t.Errorf("parseDigest(%q) = %q, %v; digest.Parse: %q, %v", s, got, err, want, werr)
		}
	}
}
