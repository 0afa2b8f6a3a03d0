// Package pgtest starts real PostgreSQL servers for tests: each on a free
// 127.0.0.1 port, in its own directory, with trust authentication on
// loopback, stopped when the test ends. It is package pgproc with a
// testing.TB: see there how servers are made (from a template data
// directory that initdb makes once per machine and PostgreSQL version, as
// the postgres user when the tests run as root).
package pgtest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fencerlock/fencer/internal/pgproc"
	"github.com/fencerlock/fencer/internal/testutil"
)

// DefaultDatabase is the database a server has when Options.Database is
// empty.
const DefaultDatabase = pgproc.DefaultDatabase

// readyTimeout bounds each wait for a server to accept connections, after
// a start or a restart.
const readyTimeout = 30 * time.Second

// Options configure a server. A nil *Options, or a zero field, means the
// default.
type Options struct {
	// NoFsync turns fsync off. The default keeps it on, so that what a
	// test sees committed is as durable as in production (a kill -9 loses
	// nothing either way; fsync matters for timing and for power loss).
	NoFsync bool

	// Database is the name of the database the server has for the test.
	// Empty means DefaultDatabase.
	Database string

	// Settings are extra server settings, "name=value" each, passed as
	// -c options (e.g. "max_connections=200").
	Settings []string
}

// Server is one PostgreSQL server process. Its methods fail the test that
// started it on error; they are not meant for concurrent use.
type Server struct {
	Port     int
	Dir      string // owned by the server's user: data/ and the Unix socket
	DataDir  string
	Database string
	Proc     *testutil.Proc // the postmaster; replaced by Restart

	t   testing.TB
	srv *pgproc.Server
}

// Start starts a PostgreSQL server for the test and waits until it
// accepts connections. A missing PostgreSQL installation fails the test,
// saying how to install one. The server is stopped, and its directory
// removed, when the test ends.
func Start(t testing.TB, opts *Options) *Server {
	t.Helper()
	var o Options
	if opts != nil {
		o = *opts
	}
	srv, err := pgproc.Start(context.Background(), pgproc.Options{
		Port:     testutil.FreePort(t),
		LogDir:   t.TempDir(),
		NoFsync:  o.NoFsync,
		Database: o.Database,
		// Small WAL files: a test server writes little, and many run.
		Settings:     append([]string{"min_wal_size=4MB", "max_wal_size=64MB"}, o.Settings...),
		ReadyTimeout: readyTimeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return &Server{Port: srv.Port, Dir: srv.Dir, DataDir: srv.DataDir, Database: srv.Database, Proc: srv.Proc(), t: t, srv: srv}
}

// Addr returns "127.0.0.1:PORT".
func (s *Server) Addr() string { return s.srv.Addr() }

// URL returns the connection URL of the test's database:
// postgres://postgres@127.0.0.1:PORT/DB?sslmode=disable.
func (s *Server) URL() string { return s.srv.URL() }

// String returns "postgres 127.0.0.1:PORT".
func (s *Server) String() string { return s.srv.String() }

// Pool returns a connection pool to the test's database, closed when t
// ends. Use pgxpool.ParseConfig(s.URL()) for a pool of another size.
func (s *Server) Pool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	p, err := pgxpool.New(context.Background(), s.URL())
	if err != nil {
		t.Fatalf("pgtest: pool for %s: %v", s, err)
	}
	t.Cleanup(p.Close)
	return p
}

// Pause stops the whole server (postmaster and backends) with SIGSTOP: its
// connections stay open and nothing answers.
func (s *Server) Pause() {
	s.t.Helper()
	if err := s.srv.Pause(); err != nil {
		s.t.Fatal(err)
	}
}

// Resume continues a paused server.
func (s *Server) Resume() {
	s.t.Helper()
	if err := s.srv.Resume(); err != nil {
		s.t.Fatal(err)
	}
}

// Kill kills the server and its backends with SIGKILL and waits until they
// are gone: a crash. Committed transactions survive it; Restart recovers
// them.
func (s *Server) Kill() { s.srv.Kill() }

// Restart kills the server with SIGKILL, if it is running, and starts it
// again on the same port and data directory: it comes back after crash
// recovery with everything committed before the kill.
func (s *Server) Restart() {
	s.t.Helper()
	err := s.srv.Restart(context.Background())
	s.Proc = s.srv.Proc()
	if err != nil {
		s.t.Fatal(err)
	}
}
