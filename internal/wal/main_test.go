package wal

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the tests if a writer goroutine outlives them.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
