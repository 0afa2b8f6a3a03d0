// Package redislock is a fencer backend over one Redis deployment: a
// standalone server, a primary with replicas behind Sentinel, or a Cluster.
// It declares the Efficiency guarantee. Use it where an occasional double
// execution costs a little time, never data.
//
// # What it guarantees, plainly
//
// Every grant carries a fencing token from a per-lock counter, and those
// tokens increase only while that Redis instance keeps its data. A restart
// without persistence forgets the lock and resets the counter, so the next
// grant can repeat a token already handed out; a failover to a replica that
// had not yet received the grant (Redis replicates asynchronously) can
// grant the same lock to a second client and reissue a token. A holder
// paused past its TTL (GC, SIGSTOP, a slow disk) can also keep working after
// another client got the lock: that is true of every lease, and only a
// token that cannot go backwards, checked by the storage, protects against
// it. So the tokens here are an aid (they make the common case visible in
// logs and let a storage reject most stale writers), not a safety
// guarantee: Lease.SafeToken reports false. Code whose correctness depends
// on the lock must use the fencer server backend or PostgreSQL, and check
// the token at the storage (package fence); with Options.Require set to
// Correctness, Acquire refuses this backend.
//
// # How it works
//
// The lock name "jobs" lives at the key "fencer:{jobs}" (the prefix is
// configurable). Acquire runs one Lua script (EVALSHA, so one round trip):
// SET key value NX PX ttl, where value is 128 random bits from crypto/rand
// unique to the grant, and on success INCR "fencer:{jobs}:token", a counter
// with no TTL whose new value is the grant's token. Renew is a
// compare-and-PEXPIRE script and Release a compare-and-DEL script that also
// PUBLISHes on "fencer:{jobs}:released"; both act only if the key still
// holds the grant's value, so an owner whose lease ran out cannot extend or
// free a lock that now belongs to someone else: it gets an error wrapping
// fencer.ErrLeaseLost. The braces are a Cluster hash tag: a lock's key and
// counter live in the same slot, which a script that touches both needs.
//
// A waiting Acquire does not poll in a tight loop. After a first try finds
// the lock held, the waiter subscribes to the lock's release channel and
// tries again once the subscription is in effect, so no release can slip
// between its try and its subscription; from then on a release wakes it
// within about one round trip. One pub/sub connection per Backend carries
// the channels of all its waiters (reference-counted, started by the first
// wait, stopped by Close). A jittered exponential back-off (20 ms growing to
// 1 s by default) and the holder's remaining TTL, which every failed try
// returns, cover what pub/sub cannot: a message lost during a reconnect, or
// a holder that died without releasing.
//
// On a Cluster, PUBLISH reaches every node over the cluster bus, which is
// fine for locks but costs bandwidth on a large cluster under heavy
// contention.
//
// # Use
//
// Open makes a Backend from a redis:// URL; New takes a go-redis client and
// a Config. Hand the Backend to fencer.New, which validates requests,
// renews leases and signals their loss.
package redislock
