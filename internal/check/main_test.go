package check

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if a goroutine outlives them: every
// run's proxies, recorders and process waiters must be gone.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
