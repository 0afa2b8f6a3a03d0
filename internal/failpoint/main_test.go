package failpoint

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if a goroutine outlives them. The
// child process of TestStopWaitsForSIGCONT runs without the check.
func TestMain(m *testing.M) {
	if os.Getenv("FAILPOINT_STOP_CHILD") == "1" {
		os.Exit(m.Run())
	}
	goleak.VerifyTestMain(m)
}
