// Package redlock is a fencer backend that runs the Redlock algorithm over
// N independent Redis masters (N odd, at least 3). It declares the
// Efficiency guarantee and issues no fencing token. Use it where an
// occasional double execution costs a little time, never data, and where
// one Redis instance being down must not stop the work.
//
// # The algorithm
//
// Acquire generates a random owner value (128 bits from crypto/rand) and
// sends SET key value NX PX ttl to every node at once (one command, no Lua,
// the cheapest grant a node can give), each request bounded by a node
// timeout that is small compared with the TTL (by default TTL/20, between
// 2 ms and 500 ms), so a dead node costs that long and no more. The
// lock is granted if a majority of the nodes (N/2+1) said yes and the lease
// still has validity left: TTL − elapsed − drift, where elapsed runs from
// the moment the requests were sent and drift is fencer.Drift(TTL) (1% of
// the TTL plus 2 ms). Otherwise the attempt is released on every node that
// might hold it, and a waiting Acquire tries again, with a fresh value,
// after a jittered delay, or as soon as a release is published on the
// nodes, or when the holder's TTL runs out. Renew is a compare-and-PEXPIRE
// on every node and needs a majority within the validity; Release is a
// compare-and-DEL on every node that also PUBLISHes to wake waiters. Each is
// one round trip to each node, in parallel.
//
// # Why it issues no token, and what it does not survive
//
// Redlock has nothing that could serve as a fencing token: the random value
// does not increase, and a counter on any one node would be lost with that
// node; counters on several nodes drift apart. Making one monotonic needs
// consensus. So Grants carry fencer.NoToken, Info reports Tokens false, and
// Lease.SafeToken is false.
//
// Its safety also rests on timing, as Martin Kleppmann showed ("How to do
// distributed locking", 2016). Redlock assumes that network delays, process
// pauses and clock errors are all small compared with the TTL. When they are
// not, two clients can hold the lock at once:
//
//   - A clock that jumps: client 1 locks nodes A, B and C; C's clock jumps
//     forward and C expires the key early; client 2 locks C, D and E. Redis
//     expires keys by the wall clock (gettimeofday), which NTP or an
//     operator can step.
//   - A process pause: client 1 sends its requests and is paused (GC,
//     SIGSTOP, swapping) while the replies wait in its socket buffers; the
//     keys expire; client 2 locks all the nodes; client 1 wakes up, reads
//     its replies and believes it holds the lock. The validity check cannot
//     help: it measures elapsed time, and a pause after the check is
//     invisible to it. A network delay of a request or of a later write to
//     the protected resource (the 90-second delay in GitHub's incident)
//     does the same.
//   - A node that restarts without persistence: it forgets the keys it
//     granted, so a majority can be formed again while the lock is held.
//     The Redlock description asks operators to delay restarts by the
//     longest TTL, which again relies on measuring time correctly.
//
// These are the reasons this backend declares Efficiency. Code whose
// correctness depends on the lock must not use it: use the fencer server
// backend (Raft, tokens that never go backwards) or PostgreSQL, and have the
// storage check the lease's token (package fence). With Options.Require set
// to Correctness, Acquire refuses this backend. If the work only needs to
// happen once most of the time, a single Redis instance (package redislock)
// is simpler and cheaper than Redlock, and issues tokens.
//
// # Use
//
// Open makes a Backend from a redlock:// URL; New takes one go-redis client
// per node and a Config. Hand the Backend to fencer.New, which validates
// requests, renews leases and signals their loss.
package redlock
