package pglock_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: the
// listener, background releases and the pools' own goroutines must all be
// stopped by Close.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
