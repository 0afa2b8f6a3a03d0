package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os/signal"
	"syscall"

	"github.com/fencerlock/fencer/internal/store"
	"github.com/fencerlock/fencer/server"
)

const storeUsage = `Usage: fencer store [--listen 127.0.0.1:7800] [--data-dir DIR]

Runs a fenced key-value store: the storage service of Kleppmann's diagram,
which refuses a request whose Fencing-Token is lower than one it has seen.

  PUT /v1/objects/{key}  body = value, header Fencing-Token: 204 accepted,
                         409 stale token, 400 missing or malformed token
  GET /v1/objects/{key}  header Fencing-Token: 200 value (404 absent),
                         409 stale token; the read raises the floor too
  GET /v1/log            the accept log, JSON lines

With --data-dir, accepted writes and floors are fsynced before the answer
and survive kill -9; without it everything is in memory.

Flags:
`

func storeCommand(ctx context.Context, env *environment, args []string) int {
	fs := flag.NewFlagSet("fencer store", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	fs.Usage = func() {
		fmt.Fprint(env.stderr, storeUsage)
		fs.PrintDefaults()
	}
	listen := fs.String("listen", "127.0.0.1:7800", "HTTP address")
	dataDir := fs.String("data-dir", "", "directory of the durable log; empty keeps everything in memory")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(env.stderr, "fencer store: unexpected argument %q; it takes flags only\n", fs.Arg(0))
		return exitUsage
	}
	if err := server.ValidateAddr("listen address", *listen, true); err != nil {
		fmt.Fprintf(env.stderr, "fencer store: %v\n", err)
		return exitUsage
	}
	logger := slog.New(slog.NewTextHandler(env.stderr, nil))
	srv, err := store.Open(store.Config{DataDir: *dataDir, Logger: logger})
	if err != nil {
		fmt.Fprintf(env.stderr, "fencer store: %v\n", err)
		return exitFailure
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		srv.Close()
		fmt.Fprintf(env.stderr, "fencer store: listen on %s: %v\n", *listen, err)
		return exitFailure
	}
	where := "memory only"
	if *dataDir != "" {
		where = "data in " + *dataDir
	}
	fmt.Fprintf(env.stdout, "fencer store: serving on http://%s (%s)\n", ln.Addr(), where)
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err = srv.Serve(ctx, ln)
	if cerr := srv.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		fmt.Fprintf(env.stderr, "fencer store: %v\n", err)
		return exitFailure
	}
	return exitOK
}
