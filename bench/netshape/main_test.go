package netshape

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test closes its relays, servers and clients; goleak then checks
// that Close really waited for every goroutine it started.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
