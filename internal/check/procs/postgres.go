package procs

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"github.com/fencerlock/fencer/internal/pgproc"
	"github.com/fencerlock/fencer/internal/testutil"
)

// Postgres is one PostgreSQL server (the postmaster and its backends),
// with a database "postgres" that the user postgres reaches without a
// password over 127.0.0.1.
type Postgres struct {
	Addr string // 127.0.0.1:port
	srv  *pgproc.Server
}

// StartPostgres starts a PostgreSQL server and waits until it accepts
// connections. initdb runs once per machine and PostgreSQL version; its
// result is kept as a template under pgproc.BaseDir and copied for every
// server. As root, the server runs as the postgres user. logDir gets the
// server's log.
func StartPostgres(ctx context.Context, logDir string) (*Postgres, error) {
	addr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	srv, err := pgproc.Start(ctx, pgproc.Options{Port: p, LogDir: logDir, Database: "postgres"})
	if err != nil {
		return nil, fmt.Errorf("procs: %w", err)
	}
	return &Postgres{Addr: srv.Addr(), srv: srv}, nil
}

// URL returns the connection URL of the server's postgres database.
func (pg *Postgres) URL() string { return pg.srv.URL() }

// URLAt returns the connection URL for reaching the server at addr (a
// proxy in front of it).
func (pg *Postgres) URLAt(addr string) string { return pg.srv.URLAt(addr) }

// Proc returns the postmaster's process.
func (pg *Postgres) Proc() *testutil.Proc { return pg.srv.Proc() }

// Close stops the server (an immediate shutdown, SIGQUIT, which frees its
// shared memory), kills it if it does not stop within 5 s, and removes its
// directory.
func (pg *Postgres) Close() error { return pg.srv.Close() }
