package stream

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if goroutines outlive its tests: every
// stream goroutine must be stopped by Close.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
