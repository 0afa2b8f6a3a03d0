// Package server is the fencer lock server: a lock state machine
// (internal/lockstate) replicated by hashicorp/raft, serving the LockService
// API of proto/fencer/v1/lock.proto over gRPC and JSON over HTTP on one port.
//
// A program or a test starts one in-process, as etcd's embed package does:
//
//	srv, err := server.Start(ctx, server.Config{DataDir: dir, ListenAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0", Bootstrap: true})
//	if err != nil { ... }
//	defer srv.Close()
//	backend, err := client.New(client.Config{Endpoints: []string{srv.Addr()}})
//
// # Who decides what
//
// Consensus, not time, decides who holds a lock: the state machine grants,
// releases and expires only by applying log entries, and never reads a
// clock. Time lives on the leader alone. Clients keep their sessions alive
// with KeepAlive, which the leader answers after confirming its leadership
// with a quorum and does not write to the log; the leader tracks each
// session's deadline on its monotonic clock and, when one passes, proposes an
// expiry through the log. A new leader restarts every deadline at a full TTL
// before it expires anything, and followers never expire anything, so no
// session ends earlier than its client was promised (up to clock rate drift,
// which the client's margin covers).
//
// # Requests
//
// Acquire opens a client-chosen session and asks for the lock in two log
// entries proposed back to back (one append, one fsync). A waiting Acquire
// stays open on the leader and is answered the moment the grant commits.
// Retrying with the same session ID is idempotent. Reads (Status) are
// linearizable: the leader confirms its leadership and waits until it has
// applied everything committed before the read began. A node that is not the
// leader answers with the leader's client address; clients follow it.
//
// Concurrent requests share log appends and fsyncs: hashicorp/raft's leader
// takes every entry waiting in its apply channel into one batch (group
// commit), up to Config.MaxAppendEntries.
package server
