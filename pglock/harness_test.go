package pglock_test

import (
	"github.com/fencerlock/fencer/internal/testutil"
	"github.com/fencerlock/fencer/internal/testutil/pgtest"
)

// exampleServer starts a PostgreSQL server for an example and returns its
// URL and the function that stops it.
func exampleServer() (url string, stop func()) {
	tb := testutil.NewExampleTB("pglock")
	return pgtest.Start(tb, nil).URL(), tb.Stop
}
