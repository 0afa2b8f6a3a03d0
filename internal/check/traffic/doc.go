// Package traffic is the checker's client workload: the loop that one
// worker process (`fencer check-worker`, started by the harness) runs
// against a lock backend and the fenced store, recording every step in its
// own history file (package history) in exactly the shape package analyze
// reads.
//
// # The loop
//
// Each iteration is Kleppmann's read-modify-write under a lock:
//
//	acquire  the lock (fencer.Client over the backend; blocking, bounded by
//	         Config.AcquireTimeout)
//	read     GET the key from the store with the lease's token (409: stale)
//	hold     optional work time (Config.Hold)
//	check    look at the lease once more (skipped with NoLeaseCheck): a lost
//	         lease skips the write
//	write    PUT the value + 1 (counter), or the set with one more element
//	         of this worker's own (set), with the token
//	release  the lease
//
// with the failpoints (package failpoint) after-acquire, after-read,
// before-write and before-release between the steps, and
// redlock-after-replies inside Redlock's acquire (redlock.Config's
// AfterReplies hook), so the harness can stop the process exactly there.
// The before-write point comes after the last look at the lease: Kleppmann's
// "GC can pause a running thread at any point, including the point that is
// maximally inconvenient for you (between the last check and the write
// operation)".
//
// # What is recorded
//
// Operations are invocation/completion pairs (acquire, read, write,
// release; -ok, -fail, -unknown, and write-rejected for a 409). acquire-ok
// carries the token and valid_until (Lease.ValidUntil as a CLOCK_MONOTONIC
// time); a watcher goroutine per lease records lease-extended when a
// renewal moves ValidUntil and lease-lost when Lease.Done closes for any
// reason but a release. A failpoint that stops the process records pause
// (the harness records the resume when it sends SIGCONT); one that sleeps
// records a fault span "sleep" on the worker.
//
// # Backends without tokens, and unfenced runs
//
// The store always checks tokens; it has no unfenced mode. A worker with
// Config.Unfenced sends the same token, 1, with every request: the store
// never refuses a token equal to its floor, so it behaves as a plain
// register. That is the store "without fencing" of the control run, and the
// best a client of a backend that issues no token (Redlock, the naive
// fixed-value lock) can do; such backends need Unfenced, and the harness
// marks their runs Run.StoreUnfenced. The token sent is what the read and
// write events record.
//
// # Errors
//
// An operation whose outcome the worker cannot know (a timeout, a lost
// connection, a 5xx, the run ending under it) is recorded -unknown, never
// -fail. Run returns an error only when the worker cannot do its job at
// all (a bad backend URL, a history it cannot write); the outcome of the
// operations is the history's business.
package traffic
