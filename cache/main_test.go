package cache

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if goroutines outlive its tests: a capped
// Store owns one goroutine, and Close must have stopped it.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
