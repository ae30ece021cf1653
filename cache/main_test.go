package cache

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if goroutines outlive its tests: a Store
// starts none, so any left over is a leak.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
