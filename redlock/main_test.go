package redlock_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: the
// fan-out goroutines, the nodes' subscribers, background releases and
// go-redis's own goroutines must all be stopped by Close.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
