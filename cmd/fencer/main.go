// Command fencer is the fencer toolkit's one binary.
//
//	fencer server                    # the embedded default: one node on 127.0.0.1:7700
//	fencer run [--backend URL] --lock NAME [--ttl 15s] [--wait 30s] -- COMMAND [ARGS...]
//
// Run `fencer help` for every command.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
)

// Exit statuses shared by the commands.
const (
	exitOK       = 0
	exitFailure  = 1
	exitUsage    = 2  // a bad flag, URL, TTL or lock name
	exitNotHeld  = 75 // the lock was not obtained within --wait (EX_TEMPFAIL)
	exitLostLock = 76 // the lease was lost while the command ran
)

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, env *environment, args []string) int
}

// environment is what a command may use of the process: its streams and
// environment variables, so tests can run commands in-process.
type environment struct {
	stdout, stderr io.Writer
	getenv         func(string) string
}

func commands() []command {
	return []command{
		{"server", "run a lock server node (no flags: the one-node embedded default on 127.0.0.1:7700)", serverCommand},
		{"run", "run a command while holding a lock, with its fencing token in FENCER_TOKEN", runCommand},
		{"status", "show who holds each lock, with tokens and waiters", statusCommand},
		{"members", "list the server cluster's nodes and their roles", membersCommand},
		{"store", "run a fenced key-value store that refuses stale tokens", storeCommand},
		{"bench", "measure a backend: throughput, acquire and hand-off latency, fairness", benchCommand},
		{"check", "reproduce the seed articles' failure scenarios against real processes and check which backends hold", checkCommand},
		{"check-worker", "", checkWorkerCommand}, // hidden: a client worker that fencer check starts
	}
}

func main() {
	env := &environment{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}
	os.Exit(dispatch(context.Background(), env, os.Args[1:]))
}

func dispatch(ctx context.Context, env *environment, args []string) int {
	if len(args) == 0 {
		usage(env.stderr)
		return exitUsage
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		usage(env.stdout)
		return exitOK
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, env, args[1:])
		}
	}
	fmt.Fprintf(env.stderr, "fencer: unknown command %q\n\n", args[0])
	usage(env.stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "fencer: distributed locks with fencing tokens")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Usage: fencer COMMAND [FLAGS]")
	fmt.Fprintln(w)
	for _, c := range commands() {
		if c.summary == "" {
			continue // hidden: run by other commands, not by hand
		}
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'fencer COMMAND --help' for a command's flags.")
}
