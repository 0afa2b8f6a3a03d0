// Package pglock is a fencer backend for teams that already run
// PostgreSQL: locks are rows of a table, fencing tokens come from a
// sequence, and leases expire by the database's own clock. It declares the
// Correctness guarantee, for a single durable database.
//
// # What it guarantees
//
// On one PostgreSQL server with fsync on and synchronous_commit on (the
// defaults), or stronger:
//
//   - Mutual exclusion within a lease: a lock is granted to one owner at a
//     time, until that owner releases it or its lease runs out.
//   - Tokens that strictly increase with every grant of a lock, and are
//     never reused, across client crashes and database crashes and
//     restarts. They come from one sequence per table, so they also
//     increase across the locks of a table; they have gaps. A grant is
//     returned only after it committed, and a committed grant is durable.
//   - Expiry by the database's clock: a lease ends TTL after the database
//     processed the grant or the last renewal (expires_at =
//     clock_timestamp() + TTL), so clients need no synchronized clocks. A
//     client's own view of the lease (fencer.Lease.ValidUntil) starts
//     before it sent the request and is shortened by a drift allowance,
//     so it ends first as long as the two clocks run at about the same
//     rate.
//   - A holder that dies, or stops renewing, loses the lock one TTL after
//     its last successful request; its renewals and releases after that
//     fail with fencer.ErrLeaseLost and leave the new owner alone. Every
//     grant has an owner value of 128 bits from crypto/rand, so no other
//     client can guess or collide with it.
//
// # What it does not guarantee
//
// The lease is a lease. A holder paused past its lease (a GC pause,
// SIGSTOP, a slow disk), or whose write is delayed in the network, can
// still act after another client got the lock. Only the storage can stop
// that, by refusing a token lower than one it has seen: see package fence,
// and package fence/fencepg for a write fenced inside the caller's own
// PostgreSQL transaction.
//
// Expiry follows the database host's wall clock, so a forward jump of that
// clock ends leases early (a client can then be granted a lock whose
// previous holder still thinks it has it; the tokens tell them apart) and
// a backward jump makes them last longer. Let NTP slew that clock rather
// than step it.
//
// The guarantee is for a single durable database. Failing over to an
// asynchronous standby breaks it. The standby may not have received the
// last grants: once promoted, it can grant a lock that is held, and hand
// out a token that was already issued. The sequence can even go
// backwards there. PostgreSQL does not write WAL for every nextval: one
// WAL record claims the next 32 values in advance, and the values it
// covers are handed out without further WAL (after a crash, the unused
// ones are skipped). A standby's copy of the sequence is only as recent as
// the last such record it replayed, so a standby that is behind restarts
// the sequence below tokens the old primary already gave to holders, who
// may have shown them to storage. (A standby that has caught up is, if
// anything, ahead by up to 32.) So if you fail over, replicate
// synchronously to the failover candidates, synchronous_standby_names
// naming them and synchronous_commit on (flushed on the standby) or
// remote_apply, and fail over only to one of them. Do not set your
// pool up to send cancel requests on context cancellation
// (pgx's CancelRequestContextWatcherHandler) in that setup: PostgreSQL
// answers a synchronous-replication wait cancelled by the client with
// success, and a warning, for a transaction committed only locally. pgx's
// default closes the connection instead, and such a grant is never
// returned. Logical replication does not keep a subscriber's sequences in
// step with the publisher's (at best they are synchronized on request);
// never fail over to a logical replica. And a problem has been reported
// for PostgreSQL 15 and later: the first values drawn from a sequence in a
// database made by CREATE DATABASE ... TEMPLATE (with the default WAL_LOG
// strategy) are not WAL-logged, so a failover can set it back; keep the
// lock table out of template databases.
//
// Tokens are only as monotonic as the sequence. Never reset it (ALTER
// SEQUENCE ... RESTART, setval to a lower value), never recreate the
// table and sequence while a storage service remembers tokens, and after
// restoring a backup or a point-in-time recovery, move the sequence past
// every token issued before (SELECT setval('fencer_locks_token',
// last_value + 1000000) FROM fencer_locks_token). The first Acquire of a
// Backend refuses a sequence with CACHE above 1 (values would come out of
// order across sessions), a negative increment or CYCLE.
//
// Clients exclude each other only if they use the same table of the same
// database.
//
// # How it works
//
// The first Acquire of a Backend creates the table and its sequence if
// either is missing, under a transaction-scoped advisory lock so that two
// processes starting at once do not collide. To create them ahead of
// time (then the clients need no CREATE privilege):
//
//	CREATE SEQUENCE fencer_locks_token AS bigint MINVALUE 1 NO CYCLE CACHE 1;
//	CREATE TABLE fencer_locks (
//		name text PRIMARY KEY,
//		owner uuid NOT NULL,
//		token bigint NOT NULL CHECK (token > 0),
//		expires_at timestamptz NOT NULL,
//		waiters boolean NOT NULL DEFAULT false
//	) WITH (fillfactor = 70);
//	GRANT SELECT, INSERT, UPDATE, DELETE ON fencer_locks TO app;
//	GRANT USAGE ON SEQUENCE fencer_locks_token TO app;
//
// An attempt to acquire is one statement, one round trip: INSERT ... ON
// CONFLICT (name) DO UPDATE ... WHERE the row has expired by
// clock_timestamp() (or is this Acquire's own, from an attempt whose reply
// was lost), RETURNING the token, nextval of the sequence. A row exists
// only while a lock is held (or has expired without a release).
//
// The statement takes a transaction-scoped advisory lock on the lock name
// before it calls nextval, held until it commits, so the grants of one
// lock are serialized from drawing their token to their commit: each draws
// after the previous one committed, and so draws a higher value. Without
// it, an INSERT ... ON CONFLICT could draw its token, be delayed before it
// looks for a conflicting row, and then insert that token after a higher
// one had been granted and released (deleted) in the meantime. The
// advisory lock uses the two-key form, pg_advisory_xact_lock(hash of the
// table, hash of the name). A try of a held lock checks first, and then
// neither takes the advisory lock nor draws a value. Gaps are harmless
// anyway: sequences are not transactional, so a value drawn by an attempt
// that did not take the lock, or whose transaction failed, is skipped and
// never handed out again.
//
// Renew is an UPDATE of expires_at where name, owner and token match and
// the lease has not expired. Release is a DELETE where name, owner and
// token match, which also calls pg_notify in the same statement, so the
// notification goes out exactly when the release commits. A row can be
// deleted by hand at any time (the lock is then free, and its holder
// learns so at its next renewal); expired rows that nobody takes over stay
// until the lock's name is used again, and may be deleted too.
//
// A waiting Acquire does not poll in a tight loop. Each Backend has one
// listening connection, started by the first waiting Acquire and stopped
// by Close, that LISTENs on the table's channel (its schema-qualified
// name, such as "public.fencer_locks"); the payload of a notification is
// the released lock's name, and the listener wakes that lock's waiters. A waiter registers with the listener before its first
// attempt, so a release that commits after the attempt wakes it (and when
// the listener (re)connects, it wakes every waiter, since releases while
// it was away were lost). An attempt that finds the lock held also sets
// the row's waiters flag, in the same round trip (and a grant to an Acquire
// that had to wait starts out flagged, since others probably still wait);
// only a release of a flagged row notifies, because a NOTIFY takes a
// database-wide lock while its transaction commits, which would otherwise
// serialize all releases. Between attempts a waiter sleeps until it is
// notified, until its jittered back-off fires (20 ms doubling to 1 s by
// default; for lost notifications), or until the holder's lease runs out
// by the database's clock, whichever comes first.
//
// Every grant and every release is one commit, which with fsync and
// synchronous_commit on waits for a WAL flush; concurrent commits share
// flushes. A hand-off from a holder to a waiter takes two commits.
//
// # Use
//
// Open makes a Backend from a postgres:// URL; New takes a Config, with
// either a pgxpool.Pool or a URL. Hand the Backend to fencer.New, which
// validates requests, renews leases and signals their loss, and ask for
// Correctness where the code depends on it:
//
//	b, err := pglock.Open(ctx, "postgres://app@db.internal/app")
//	if err != nil { ... }
//	c := fencer.New(b, nil)
//	defer c.Close()
//	lease, err := c.Acquire(ctx, "invoices", &fencer.Options{Require: fencer.Correctness})
//	if err != nil { ... }
//	defer lease.Release(context.Background())
//	// Send lease.Token() with every write; the storage checks it.
package pglock
