package fencepg_test

import (
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fencerlock/fencer/internal/testutil"
	"github.com/fencerlock/fencer/internal/testutil/pgtest"
)

// examplePool starts a PostgreSQL server for an example and returns a
// pool of connections to it, and the function that stops both.
func examplePool() (*pgxpool.Pool, func()) {
	tb := testutil.NewExampleTB("fencepg")
	srv := pgtest.Start(tb, nil)
	return srv.Pool(tb), tb.Stop
}
