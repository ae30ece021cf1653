package images

import (
	"os"
	"testing"
)

// TestMain removes the quick image the tests share (see quickSet).
func TestMain(m *testing.M) {
	code := m.Run()
	if quickOnce.dir != "" {
		os.RemoveAll(quickOnce.dir)
	}
	os.Exit(code)
}
