package lazy

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if goroutines outlive its tests: a Layer's
// goroutines (read-ahead, decoding the rest of a window) end by Close, so
// any left over is a leak (estargz.Build's own finish shortly after its
// blob is read).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
