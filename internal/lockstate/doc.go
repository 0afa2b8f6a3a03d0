// Package lockstate is the deterministic lock state machine of the fencer lock
// server: sessions, locks, FIFO wait queues, lock-delay and the fencing-token
// counter. The server replicates it with Raft; this package knows nothing
// about Raft, the network or time.
//
// # Who calls what
//
// The server's Raft FSM adapter owns one [Machine]. It calls [Machine.Apply]
// with the bytes of every committed log entry, in log order, on every node;
// [Machine.Snapshot] when Raft compacts its log; and [Machine.Restore] when a
// node installs a snapshot. The leader builds those bytes with [Encode] from
// a [Command]. The query methods ([Machine.Lock], [Machine.Locks],
// [Machine.Session], [Machine.Sessions], [Machine.PendingDelays],
// [Machine.LastToken]) serve the server's reads after a Raft barrier.
//
// A Machine is not safe for concurrent use. The adapter serializes every call,
// queries included. hashicorp/raft runs FSMSnapshot.Persist concurrently with
// Apply, so the adapter must call Snapshot (which copies the whole state into
// a byte slice) inside FSM.Snapshot and only write those bytes in Persist.
//
// # Determinism
//
// Every replica applies the same entries and must reach the same state, give
// the same [Result] and produce byte-identical snapshots. So Apply never reads
// a clock, draws a random number, does I/O or starts a goroutine, and nothing
// it returns or stores depends on map iteration order: where order matters
// (events of one entry, snapshots, query results) the code sorts.
//
// Time lives on the leader only. A command carries Now, the leader's wall
// clock when it proposed the entry, which the machine stores for display
// (when a lock was granted, when a waiter queued) and never compares. Session
// TTLs and lock-delays are plain data here: the leader runs the timers on its
// monotonic clock and proposes [ExpireSession] or [LiftDelay] when one fires.
// A new leader restarts every session's deadline at a full TTL
// ([Machine.Sessions]) and every pending lock-delay at its full length
// ([Machine.PendingDelays]), so nothing ends earlier than promised. Safety
// never depends on time: it rests on the fencing token, which strictly
// increases with every grant of every lock and is never reused, because the
// counter lives in the state and in every snapshot.
//
// # Results and events
//
// Apply returns a [Result] for whoever proposed the entry, and the [Event]s the
// entry caused for anyone else: a release or an expiry grants the lock to
// the head waiter in the same entry, and the leader uses the Granted event to
// answer that waiter's blocked call at once. Only the leader acts on events;
// followers drop them.
//
// # Idempotent requests
//
// Acquire, Release and Cancel carry (Session, Seq, AckedBelow), the client
// session scheme of Ongaro's Raft thesis, §6.3. The machine keeps the result
// of each applied request whose Seq is at least AckedBelow, and answers a
// retry with it instead of executing the request again, so a retry after a
// leader change neither acquires twice nor releases a later grant. A retried
// Acquire that was Queued answers with its current outcome. A client must
// therefore keep a queued Acquire's Seq at or above AckedBelow until it has
// learned that outcome. OpenSession is not idempotent: a retry opens a second
// session, and the orphan expires after its TTL.
//
// # Encoding
//
// A command is one log entry. Byte 0 is the command type; the fields follow
// in a fixed order as unsigned varints (IDs, sequence numbers, tokens,
// generations), signed varints (durations in nanoseconds, timestamps in Unix
// nanoseconds, 0 for the zero time), one flag byte, and length-prefixed
// strings. The type byte is also the version: a type's layout never changes
// once released; a new layout gets a new type byte and the old one stays
// decodable, because old entries stay in Raft logs. Decoding is strict
// (minimal varints, no trailing bytes, unknown flag bits rejected), so every
// command has exactly one encoding. A snapshot starts with "FLSM" and a
// version byte; see [Machine.Snapshot].
//
// # Room for change
//
//   - A new command: a type in command.go, its case in Encode, Decode and
//     Apply (machine.go), a model rule in model_test.go, a transcript.
//   - Snapshot layout: snapshot.go; bump snapshotVersion and keep reading the
//     old one.
//   - Memory per lock: the lock struct in machine.go.
//   - Wait queues are slices: appending and granting the head are O(1), but
//     a Cancel or a session end removes its waiter from the middle in
//     O(queue length). If queues of 100k waiters become real, link the
//     waiters as the locks of a session are linked.
//   - Large snapshots block Apply while they are copied; a persistent
//     (immutable) map would remove that if snapshots of millions of locks
//     ever hurt.
package lockstate
