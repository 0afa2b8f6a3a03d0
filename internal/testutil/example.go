package testutil

import (
	"fmt"
	"os"
	"testing"
)

// ExampleTB lets a runnable Example, which has no testing.TB, use helpers
// that want one (pgtest.Start, say): it runs their cleanups, last first,
// when the example calls Stop, and turns a fatal error (or an Errorf) into
// a panic, which fails the example. Helper and Logf do nothing. Only the
// methods such helpers use are implemented; the embedded nil TB panics on
// the rest. Not safe for concurrent use.
type ExampleTB struct {
	testing.TB
	prefix   string
	cleanups []func()
}

// NewExampleTB returns an ExampleTB whose temporary directories are named
// after prefix (the package, say).
func NewExampleTB(prefix string) *ExampleTB { return &ExampleTB{prefix: prefix} }

func (*ExampleTB) Helper()                           {}
func (*ExampleTB) Logf(format string, args ...any)   {}
func (*ExampleTB) Errorf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }
func (*ExampleTB) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }
func (*ExampleTB) Fatal(args ...any)                 { panic(fmt.Sprint(args...)) }
func (tb *ExampleTB) Cleanup(f func())               { tb.cleanups = append(tb.cleanups, f) }

// TempDir returns a new directory, removed by Stop.
func (tb *ExampleTB) TempDir() string {
	d, err := os.MkdirTemp("", tb.prefix+"-example-")
	if err != nil {
		panic(err)
	}
	tb.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// Stop runs the cleanups, last first.
func (tb *ExampleTB) Stop() {
	for i := len(tb.cleanups) - 1; i >= 0; i-- {
		tb.cleanups[i]()
	}
	tb.cleanups = nil
}
