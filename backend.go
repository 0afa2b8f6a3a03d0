package fencer

import (
	"context"
	"time"
)

// Backend is the mechanism behind a [Client]: one store of locks (a Redis
// instance, a set of Redlock masters, a PostgreSQL database, a fencer server
// cluster). The Client owns the policy: validation, the conservative view of
// a lease's validity, automatic renewal and the lease-loss signal. A Backend
// only talks to its store.
//
// A Backend must be safe for concurrent use. The Client calls Acquire from
// the goroutine that called [Client.Acquire], Renew from each lease's own
// keeper goroutine and Release from the goroutine that called
// [Lease.Release]; calls for different leases, and a Renew and a Release of
// the same lease, may run at the same time. Close is called once, after
// every other call has returned.
//
// Every method must return when ctx is done, with an error that wraps
// ctx.Err(). Errors that mean "the store does not record this grant as
// yours" must wrap [ErrLeaseLost]; a try that found the lock held must wrap
// [ErrLocked]. Any other error is treated as transient by the Client's
// renewal loop, which keeps retrying until the lease's validity runs out.
//
// Packages locktest (the conformance suite every backend passes) and the
// backends in this module (redislock, redlock, pglock, client) are the
// reference for this contract.
type Backend interface {
	// Info describes the backend. It is called once, by New, and must not
	// change afterwards.
	Info() BackendInfo

	// Acquire asks the store for the lock req.Name. With req.Wait false it
	// makes one attempt and returns an error wrapping ErrLocked if another
	// owner holds the lock. With req.Wait true it blocks until the lock is
	// granted or ctx is done, waking as soon as the store tells it the lock
	// is free rather than by polling alone.
	//
	// The returned Grant's Sent must be the moment, on this process's
	// monotonic clock, the request that produced the grant was sent, or
	// earlier: the Client measures validity from it. A zero Sent makes the
	// Client use the moment it called Acquire.
	Acquire(ctx context.Context, req AcquireRequest) (Grant, error)

	// Renew extends g by g.TTL and returns the updated grant, whose Sent is
	// the moment the successful renewal request was sent. Renew is the only
	// thing that keeps a granted lease alive: a lease that is not renewed
	// expires in the store one TTL after its last successful request, as
	// when its holder's process dies.
	Renew(ctx context.Context, g Grant) (Grant, error)

	// Release gives g up. It returns an error wrapping ErrLeaseLost when the
	// store no longer records g as held by this owner; in that case it must
	// not disturb the current owner.
	Release(ctx context.Context, g Grant) error

	// Close releases the backend's connections and goroutines. It does not
	// release locks.
	Close() error
}

// BackendInfo is what a backend declares about itself.
type BackendInfo struct {
	// Kind is the backend's URL scheme: "redis", "redlock", "postgres" or
	// "fencer".
	Kind string
	// Guarantee is what the backend promises; see Efficiency and
	// Correctness.
	Guarantee Guarantee
	// Tokens reports whether grants carry a fencing token at all. Redlock's
	// do not.
	Tokens bool
	// LockDelay reports whether AcquireRequest.LockDelay is supported.
	LockDelay bool
}

// SafeTokens reports whether the backend's tokens can be trusted to fence a
// storage service: it issues them and declares Correctness.
func (i BackendInfo) SafeTokens() bool { return i.Tokens && i.Guarantee == Correctness }

// AcquireRequest is what the Client asks a Backend for. The Client validates
// every field before a Backend sees it.
type AcquireRequest struct {
	// Name is the lock's name: 1 to 256 bytes of UTF-8 without control
	// characters.
	Name string
	// TTL is how long the store keeps the lock without a renewal; from
	// MinTTL to MaxTTL.
	TTL time.Duration
	// Wait makes Acquire block until the lock is granted or ctx is done.
	Wait bool
	// LockDelay, when non-zero, keeps the lock from being granted again for
	// this long after the holder's lease expires (not after a clean
	// release). Only backends whose Info says LockDelay accept it.
	LockDelay time.Duration
}

// Grant is one backend's record of a granted lock. The Client treats it as
// opaque except for the fields documented here.
type Grant struct {
	// Name is the lock's name.
	Name string
	// Token is the fencing token of this grant, or NoToken.
	Token Token
	// TTL is the lease's time to live in the store.
	TTL time.Duration
	// Sent is when the request that granted or last renewed the lease was
	// sent, on the monotonic clock of this process (a time.Now reading).
	Sent time.Time
	// Lost, if not nil, is closed by the backend when it learns that the
	// lease is gone (a session expiry, a connection that the store tied the
	// lease to). The Client then signals loss at once instead of at the next
	// renewal.
	Lost <-chan struct{}
	// Handle is the backend's own state for this grant: the owner value, a
	// session. The Client passes it back unchanged.
	Handle any
}
