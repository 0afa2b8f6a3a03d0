package pglock_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/fencerlock/fencer/internal/testutil/pgtest"
)

// exampleTB lets an Example start a pgtest server, which wants a
// testing.TB: it runs cleanups when the example ends and turns a fatal
// error into a panic, which fails the example. Only the methods pgtest
// uses are implemented; the embedded nil TB panics on the rest.
type exampleTB struct {
	testing.TB
	cleanups []func()
}

func (*exampleTB) Helper()                           {}
func (*exampleTB) Logf(format string, args ...any)   {}
func (*exampleTB) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }
func (*exampleTB) Fatal(args ...any)                 { panic(fmt.Sprint(args...)) }
func (tb *exampleTB) Cleanup(f func())               { tb.cleanups = append(tb.cleanups, f) }

func (tb *exampleTB) TempDir() string {
	d, err := os.MkdirTemp("", "pglock-example-")
	if err != nil {
		panic(err)
	}
	tb.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func (tb *exampleTB) stop() {
	for i := len(tb.cleanups) - 1; i >= 0; i-- {
		tb.cleanups[i]()
	}
}

// exampleServer starts a PostgreSQL server for an example and returns its
// URL and the function that stops it.
func exampleServer() (url string, stop func()) {
	tb := &exampleTB{}
	return pgtest.Start(tb, nil).URL(), tb.stop
}
