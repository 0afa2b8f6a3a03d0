package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/internal/faults/clockfile"
	"github.com/fencerlock/fencer/server"
)

const serverUsage = `Usage: fencer server [FLAGS]

Runs a fencer server node: a Raft-replicated lock service that issues
fencing tokens. With no flags it is the embedded default: a one-node
cluster with data in ./fencer-data, the client API (gRPC and JSON over HTTP)
on 127.0.0.1:7700 and Raft on 127.0.0.1:7701.

A node whose data dir is empty bootstraps a new one-node cluster, unless
--join names a member of an existing cluster. A node started again on an
existing data dir rejoins its cluster and needs neither. SIGTERM or SIGINT
stops it gracefully.

Flags:
`

func serverCommand(ctx context.Context, env *environment, args []string) int {
	fs := flag.NewFlagSet("fencer server", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	fs.Usage = func() {
		fmt.Fprint(env.stderr, serverUsage)
		printVisibleDefaults(fs, hiddenServerFlags...)
	}
	def := server.DefaultConfig()
	cfg := server.Config{}
	fs.StringVar(&cfg.NodeID, "node-id", def.NodeID, "this node's ID, unique in the cluster: 1-64 of [A-Za-z0-9._-]")
	fs.StringVar(&cfg.DataDir, "data-dir", def.DataDir, "directory of the Raft log and snapshots")
	fs.StringVar(&cfg.ListenAddr, "listen", def.ListenAddr, "client API address (gRPC and JSON over HTTP)")
	fs.StringVar(&cfg.AdvertiseAddr, "advertise", "", "client API address to tell others (default: the --listen address)")
	fs.StringVar(&cfg.RaftAddr, "raft-listen", def.RaftAddr, "Raft address")
	fs.StringVar(&cfg.RaftAdvertiseAddr, "raft-advertise", "", "Raft address to tell others (default: the --raft-listen address)")
	bootstrap := fs.Bool("bootstrap", false, "start a new cluster if the data dir is empty (the default without --join)")
	fs.StringVar(&cfg.Join, "join", "", "client API address of any member of the cluster to join")
	fs.StringVar(&cfg.LogStore, "log-store", def.LogStore, "Raft log store: wal or bolt")
	fs.DurationVar(&cfg.HeartbeatTimeout, "heartbeat-timeout", def.HeartbeatTimeout, "how long followers wait for the leader before an election")
	fs.Func("raft-peer", "ID=ADDR: dial node ID's Raft traffic at ADDR instead of its configured address (repeatable; for fault-injecting proxies)", func(v string) error {
		id, addr, ok := strings.Cut(v, "=")
		if !ok {
			return fmt.Errorf("%q is not ID=ADDR", v)
		}
		if cfg.RaftPeerAddrs == nil {
			cfg.RaftPeerAddrs = map[string]string{}
		}
		cfg.RaftPeerAddrs[id] = addr
		return nil
	})
	verbose := fs.Bool("v", false, "log at debug level")
	// Hidden, for the checker: the leader's clock reads this node's offset
	// and rate from a file the checker rewrites (package clockfile).
	clockFile := fs.String("clock-file", "", "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(env.stderr, "fencer server: unexpected argument %q; it takes flags only\n", fs.Arg(0))
		return exitUsage
	}
	if *bootstrap && cfg.Join != "" {
		fmt.Fprintln(env.stderr, "fencer server: --bootstrap and --join exclude each other: a node either starts a new cluster or joins one")
		return exitUsage
	}
	cfg.Bootstrap = cfg.Join == ""
	if *clockFile != "" {
		clock, err := clockfile.New(*clockFile, cfg.NodeID)
		if err != nil {
			fmt.Fprintf(env.stderr, "fencer server: --clock-file: %v\n", err)
			return exitUsage
		}
		cfg.Clock = clock
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	cfg.Logger = slog.New(slog.NewTextHandler(env.stderr, &slog.HandlerOptions{Level: level}))

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	startCtx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-sigs:
			cancel()
		case <-startCtx.Done():
		}
	}()
	srv, err := server.Start(startCtx, cfg)
	cancel()
	if err != nil {
		fmt.Fprintf(env.stderr, "fencer server: %v\n", err)
		if errors.Is(err, fencer.ErrInvalid) {
			return exitUsage
		}
		return exitFailure
	}
	fmt.Fprintf(env.stdout, "fencer server: node %s serving the client API on %s (gRPC and JSON over HTTP), Raft on %s, data in %s\n",
		cfg.NodeID, srv.Addr(), srv.RaftAddr(), cfg.DataDir)
	fmt.Fprintf(env.stdout, "Connect with:\n  fencer run --backend fencer://%s --lock NAME -- COMMAND\n  fencer status --backend fencer://%s\n  curl -s -H 'Content-Type: application/json' -d '{}' http://%s/fencer.v1.LockService/Status\n",
		srv.Addr(), srv.Addr(), srv.Addr())
	sig := <-sigs
	fmt.Fprintf(env.stdout, "fencer server: %v received; shutting down\n", sig)
	done := make(chan error, 1)
	go func() { done <- srv.Close() }()
	select {
	case err := <-done:
		if err != nil {
			fmt.Fprintf(env.stderr, "fencer server: shutdown: %v\n", err)
			return exitFailure
		}
	case <-time.After(30 * time.Second):
		fmt.Fprintln(env.stderr, "fencer server: shutdown took longer than 30s; exiting")
		return exitFailure
	case <-sigs:
		fmt.Fprintln(env.stderr, "fencer server: second signal; exiting now")
		return exitFailure
	}
	return exitOK
}
