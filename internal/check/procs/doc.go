// Package procs starts the real server processes of a checker run outside
// of package testing: redis-server (plain, with an append-only file, as a
// replica, or with the clock shim preloaded), PostgreSQL (run as the
// postgres user when the checker runs as root, from a template data
// directory made once per machine: package pgproc, which pgtest shares),
// and `fencer store`. Package testutil's redistest and pgtest do the same
// for tests, but take a testing.TB; the checker runs from the command line
// too.
//
// Every process listens on a free 127.0.0.1 port, keeps its files in a
// directory the caller gives (PostgreSQL: in a directory of its own under
// pgproc.BaseDir, because the postgres user must be able to reach it),
// logs to a file there, and dies with the process that started it
// (testutil.StartProc sets the parent-death signal). Each starter returns
// once its server answers, or an error that carries the log's tail. Close
// (or Kill) stops it; every process must be closed.
//
// The types are safe for concurrent use by the harness's goroutines: the
// operations that replace the process (Restart) are serialised.
package procs
