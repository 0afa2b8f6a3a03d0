package fence_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain lets the test binary double as a helper process: a test
// re-executes it with FENCE_TEST_HELPER set to run a workload that the
// test then kills with SIGKILL. Tests end with a check for leaked
// goroutines.
func TestMain(m *testing.M) {
	switch os.Getenv("FENCE_TEST_HELPER") {
	case "":
		goleak.VerifyTestMain(m)
	case "raise":
		os.Exit(raiseHelper())
	default:
		os.Stderr.WriteString("unknown FENCE_TEST_HELPER " + os.Getenv("FENCE_TEST_HELPER") + "\n")
		os.Exit(2)
	}
}
