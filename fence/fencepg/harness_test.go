package fencepg_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

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
	d, err := os.MkdirTemp("", "fencepg-example-")
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

// examplePool starts a PostgreSQL server for an example and returns a
// pool of connections to it, and the function that stops both.
func examplePool() (*pgxpool.Pool, func()) {
	tb := &exampleTB{}
	srv := pgtest.Start(tb, nil)
	return srv.Pool(tb), tb.stop
}
