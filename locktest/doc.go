// Package locktest is the conformance suite that every fencer backend
// passes, in the shape of testing/slogtest: a backend's own test starts its
// store and calls Run.
//
// The suite checks, against the real store: mutual exclusion among
// concurrent holders in one process and across processes; tokens strictly
// increasing where the backend issues them; try-acquire of a held lock;
// release and renewal by an owner whose lease has passed refused;
// expiry after the TTL of a holder that stopped renewing; ctx cancellation
// of a waiting acquire; the lease-loss signal when the lock is deleted behind
// the holder's back, when its validity runs out, and when the store goes
// away; and a waiter handed the lock promptly after a release.
package locktest
