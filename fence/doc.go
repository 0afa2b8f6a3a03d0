// Package fence is the storage side of fencing: the check that makes a
// distributed lock safe even when its holder is paused or its packets are
// delayed past the lease.
//
// Client 1 gets the lock with token 33, pauses past its lease, and client 2
// gets the lock with token 34 and writes. When client 1 wakes up and writes
// with token 33, the storage, which remembers that it has seen 34, refuses
// it. That only works if the storage takes an active part: it must check
// every request's token, reads included, and remember the highest token
// per resource (its floor) durably, before it acknowledges anything.
//
// A storage service adopts fencing in a few lines. Over HTTP:
//
//	floors, err := fence.OpenFileStore("/var/lib/svc/floors", nil)
//	if err != nil { ... }
//	defer floors.Close()
//	guard := fence.NewGuard(floors)
//	http.ListenAndServe(addr, fence.Middleware(guard, nil)(handler))
//
// and clients send the token of their lease in a Fencing-Token header. A
// service with its own protocol calls Guard.Check(ctx, resource, token) on
// every request and refuses it on an error matching ErrStale. A service
// whose data lives in PostgreSQL checks the token inside its own
// transaction with package fencepg, so the write and the floor commit
// together.
//
// FloorStore is where floors live: MemoryStore (lost on exit), FileStore
// (an fsynced append-only file with group commit) and fencepg.Store (a
// PostgreSQL table, shared by every replica of a service). Package
// fencetest is the conformance suite they pass. The fencer store command
// (internal/store) is a complete fenced key-value service.
//
// Tokens only fence what checks them: a write that reaches the data by any
// path that skips the Guard is unprotected. And they are only as good as
// their lock: use a backend that declares fencer.Correctness.
package fence
