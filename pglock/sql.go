package pglock

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The statements, with %[1]s the quoted table and %[2]s the quoted sequence.
// Each says what its parameters are. The owner value is a uuid: 128 random
// bits unique to one Acquire call. TTLs are in microseconds.
const (
	// acquireSQL ($1 name, $2 owner, $3 TTL µs, $4 and $5 the advisory lock
	// key, $6 whether this Acquire has found the lock held before) takes
	// the lock if it is free, expired, or already this owner's (a retry of
	// an attempt whose reply was lost), and returns the grant's token; it
	// returns no row if another owner holds the lock.
	//
	// Why tokens strictly increase with every grant of a lock: the token is
	// nextval() of one sequence, called while this statement holds the
	// transaction-scoped advisory lock of the lock name (the MATERIALIZED
	// CTE is scanned, which takes it, before the row that calls nextval is
	// projected). Every grant of the name runs this statement, so grants of
	// one name are serialized by that advisory lock, each one's nextval
	// happening after the previous grant committed, and nextval never
	// returns a value below one it returned before (the sequence has
	// CACHE 1; see checkSequence). Without the advisory lock the INSERT
	// branch would be unsafe: INSERT ... ON CONFLICT computes the row to
	// insert, nextval included, before it looks for a conflict, so a
	// statement delayed between the two could insert a token below that of
	// a grant made and released (deleted) in the meantime.
	//
	// Tries of a held lock do not use up sequence values, nor queue for the
	// advisory lock: the NOT EXISTS check is a one-time filter evaluated
	// before the CTE is scanned and the row is projected.
	// (It reads the snapshot taken when the statement started, so in a
	// race it can let a value be used up by an attempt that the ON
	// CONFLICT clause then refuses. Sequence values are never reused, so
	// that leaves a gap and nothing worse.) The ON CONFLICT clause decides,
	// on the latest version of the row and under its row lock.
	//
	// Expiry is decided by the database's clock, clock_timestamp(), so
	// that clients need no synchronized clocks.
	//
	// The waiters flag (see markSQL) is kept by a takeover, since whoever
	// waited for the old holder now waits for the new one, and set from the
	// start by a grant to an Acquire that had to wait: where one waited,
	// others probably still do, and this spares each hand-off of a contended
	// lock the write (and WAL flush) of the first loser's mark. At worst it
	// costs one notification nobody listens for.
	acquireSQL = `WITH serial AS MATERIALIZED (SELECT pg_advisory_xact_lock($4::int4, $5::int4))
INSERT INTO %[1]s AS l (name, owner, token, expires_at, waiters)
SELECT $1, $2, nextval('%[2]s'::regclass), clock_timestamp() + $3::bigint * interval '1 microsecond', $6::boolean
FROM serial
WHERE NOT EXISTS (SELECT FROM %[1]s h WHERE h.name = $1 AND h.owner <> $2 AND h.expires_at > clock_timestamp())
ON CONFLICT (name) DO UPDATE
SET owner = excluded.owner, token = excluded.token, expires_at = excluded.expires_at, waiters = l.waiters OR excluded.waiters
WHERE l.expires_at <= clock_timestamp() OR l.owner = excluded.owner
RETURNING token`

	// markSQL ($1 name, $2 owner) runs after acquireSQL in a waiting
	// Acquire's attempts: if another owner holds the lock, it sets the
	// row's waiters flag (once: only if it was not set) so that the
	// holder's release notifies, and it returns how long the holder's lease
	// has left, in microseconds, by the database's clock. No row means the
	// lock looked free.
	//
	// Releases notify only when the flag is set because a NOTIFY takes a
	// database-wide lock while its transaction commits, which would
	// serialize every release on one commit (one fsync) at a time.
	markSQL = `WITH marked AS (
	UPDATE %[1]s SET waiters = true
	WHERE name = $1 AND owner <> $2 AND NOT waiters AND expires_at > clock_timestamp()
	RETURNING expires_at)
SELECT (extract(epoch FROM expires_at - clock_timestamp()) * 1000000)::bigint FROM marked
UNION ALL
SELECT (extract(epoch FROM expires_at - clock_timestamp()) * 1000000)::bigint FROM %[1]s
WHERE name = $1 AND owner <> $2 AND waiters AND expires_at > clock_timestamp()`

	// renewSQL ($1 name, $2 owner, $3 token, $4 TTL µs) extends a grant
	// that has not expired by the database's clock.
	renewSQL = `UPDATE %[1]s SET expires_at = clock_timestamp() + $4::bigint * interval '1 microsecond'
WHERE name = $1 AND owner = $2 AND token = $3 AND expires_at > clock_timestamp()`

	// releaseSQL ($1 name, $2 owner, $3 token, $4 channel) deletes the
	// grant's row, notifies waiters in the same transaction (so the
	// notification is sent exactly when the release commits), and returns
	// whether the lease was still live. No row means the grant was gone.
	releaseSQL = `WITH released AS (
	DELETE FROM %[1]s WHERE name = $1 AND owner = $2 AND token = $3
	RETURNING waiters, expires_at > clock_timestamp() AS live)
SELECT r.live FROM released r LEFT JOIN LATERAL (SELECT pg_notify($4, $1) WHERE r.waiters) n ON true`

	// abandonSQL ($1 name, $2 owner, $3 channel) deletes the lock if an
	// attempt of an Acquire that gave up took it without the reply
	// arriving.
	abandonSQL = `WITH released AS (DELETE FROM %[1]s WHERE name = $1 AND owner = $2 RETURNING waiters)
SELECT FROM released r LEFT JOIN LATERAL (SELECT pg_notify($3, $1) WHERE r.waiters) n ON true`
)

// The schema. CACHE 1 matters: a sequence that caches values per session
// hands them out of order across sessions, and then tokens go backwards.
// The fill factor leaves room on each page for the updates of renewals and
// takeovers to stay HOT (no index update).
const (
	createSequenceSQL = `CREATE SEQUENCE IF NOT EXISTS %[2]s AS bigint MINVALUE 1 NO CYCLE CACHE 1`
	createTableSQL    = `CREATE TABLE IF NOT EXISTS %[1]s (
	name text PRIMARY KEY,
	owner uuid NOT NULL,
	token bigint NOT NULL CHECK (token > 0),
	expires_at timestamptz NOT NULL,
	waiters boolean NOT NULL DEFAULT false
) WITH (fillfactor = 70)`
	commentSQL = `COMMENT ON TABLE %[1]s IS 'fencer locks (package pglock): one row per held lock. Tokens come from %[2]s; never reset it.'`

	existsSQL   = `SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL, coalesce(current_schema(), '')`
	identitySQL = `SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1::regclass`
	sequenceSQL = `SELECT seqincrement, seqcache, seqcycle FROM pg_sequence WHERE seqrelid = $1::regclass`
	columnsSQL  = `SELECT name, owner, token, expires_at, waiters FROM %[1]s LIMIT 0`
	settingsSQL = `SELECT current_setting('fsync'), current_setting('synchronous_commit'), current_setting('transaction_isolation'),
	(SELECT count(*) FROM pg_stat_replication WHERE sync_state IN ('async', 'potential'))`
)

// statements are the SQL texts of one Backend, with its names filled in.
type statements struct {
	acquire, mark, renew, release, abandon string
}

func newStatements(n names) statements {
	f := func(s string) string { return fmt.Sprintf(s, n.table, n.sequence) }
	return statements{
		acquire: f(acquireSQL),
		mark:    f(markSQL),
		renew:   f(renewSQL),
		release: f(releaseSQL),
		abandon: f(abandonSQL),
	}
}

// identity is what a Backend learns about its table on first use: the
// names that every client of the table must agree on, however its
// Config.Table spells the table ("fencer_locks", "public.fencer_locks").
type identity struct {
	// class is the first key of every lock's advisory lock: the two-key
	// form pg_advisory_xact_lock(int4, int4), with the table's hash as the
	// first key and the lock name's as the second.
	class int32
	// channel is the notification channel of releases.
	channel string
}

func identityOf(schema, table string) *identity {
	canonical := schema + "." + table
	channel := canonical
	if len(channel) > 63 { // PostgreSQL's limit on channel names
		h := fnv.New64a()
		h.Write([]byte(canonical))
		channel = fmt.Sprintf("fencer_%016x", h.Sum64())
	}
	return &identity{class: keyOf(canonical), channel: channel}
}

// keyOf returns a 32-bit FNV-1a hash of s, for the advisory lock keys. Two
// lock names with the same hash only make each other's acquire statements
// wait a moment.
func keyOf(s string) int32 {
	h := fnv.New32a()
	h.Write([]byte(s))
	return int32(h.Sum32())
}

// schemaKey is the advisory lock (one-key form) under which Backends create
// the schema of the table schema.table, so that two processes starting at
// once do not both run CREATE TABLE IF NOT EXISTS, which can then fail
// with a unique violation.
func schemaKey(schema, table string) int64 {
	h := fnv.New64a()
	h.Write([]byte("fencer pglock schema\x00" + schema + "." + table))
	return int64(h.Sum64())
}

// createSchema creates the table and its sequence if either is missing,
// checks what it finds, and returns the table's identity. A Backend calls
// it once, before its first attempt.
func (b *Backend) createSchema(ctx context.Context) (*identity, error) {
	var id *identity
	err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		f := func(s string) string { return fmt.Sprintf(s, b.names.table, b.names.sequence) }
		var exists bool
		var current string
		if err := tx.QueryRow(ctx, existsSQL, b.names.table, b.names.sequence).Scan(&exists, &current); err != nil {
			return fmt.Errorf("pglock: look for the lock table %s: %w", b.names.table, err)
		}
		// Only a missing object needs CREATE privileges: a table made ahead
		// of time by an administrator works with INSERT, UPDATE, DELETE and
		// SELECT on the table and USAGE on the sequence.
		if !exists {
			schema := b.names.schema
			if schema == "" {
				schema = current // where CREATE puts an unqualified name
			}
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, schemaKey(schema, b.names.relname)); err != nil {
				return fmt.Errorf("pglock: lock the schema of %s: %w", b.names.table, err)
			}
			for _, s := range []string{createSequenceSQL, createTableSQL, commentSQL} {
				if _, err := tx.Exec(ctx, f(s)); err != nil {
					return fmt.Errorf("pglock: create the lock table %s and its sequence %s (or create them ahead of time as the package documentation shows): %w",
						b.names.table, b.names.sequence, err)
				}
			}
		}
		if err := checkSequence(ctx, tx, b.names.sequence); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, f(columnsSQL)); err != nil {
			return fmt.Errorf("pglock: the table %s is not a fencer lock table (columns name, owner, token, expires_at, waiters): %w", b.names.table, err)
		}
		var schema, table string
		if err := tx.QueryRow(ctx, identitySQL, b.names.table).Scan(&schema, &table); err != nil {
			return fmt.Errorf("pglock: look up the schema of the lock table %s: %w", b.names.table, err)
		}
		id = identityOf(schema, table)
		b.warnSettings(ctx, tx)
		return nil
	})
	return id, err
}

// errSequence marks a token sequence whose options would break tokens.
var errSequence = errors.New("pglock: the token sequence cannot give strictly increasing tokens")

// checkSequence refuses a sequence (perhaps made by hand) whose values could
// repeat or come out of order.
func checkSequence(ctx context.Context, tx pgx.Tx, seq string) error {
	var incr, cache int64
	var cycle bool
	if err := tx.QueryRow(ctx, sequenceSQL, seq).Scan(&incr, &cache, &cycle); err != nil {
		return fmt.Errorf("pglock: read the options of the token sequence %s: %w", seq, err)
	}
	switch {
	case incr <= 0:
		return fmt.Errorf("%w: %s has INCREMENT %d; accepted: a positive increment (ALTER SEQUENCE %s INCREMENT 1)", errSequence, seq, incr, seq)
	case cache != 1:
		return fmt.Errorf("%w: %s has CACHE %d, which hands values out of order across sessions; accepted: CACHE 1 (ALTER SEQUENCE %s CACHE 1)", errSequence, seq, cache, seq)
	case cycle:
		return fmt.Errorf("%w: %s has CYCLE, which reuses values; accepted: NO CYCLE (ALTER SEQUENCE %s NO CYCLE)", errSequence, seq, seq)
	}
	return nil
}

// warnSettings logs the database settings that weaken the guarantee. It is
// advice: an error reading them is ignored.
func (b *Backend) warnSettings(ctx context.Context, tx pgx.Tx) {
	var fsync, syncCommit, isolation string
	var async int64
	if _, err := tx.Exec(ctx, "SAVEPOINT pglock_settings"); err != nil {
		return
	}
	if err := tx.QueryRow(ctx, settingsSQL).Scan(&fsync, &syncCommit, &isolation, &async); err != nil {
		_, _ = tx.Exec(ctx, "ROLLBACK TO SAVEPOINT pglock_settings")
		return
	}
	if fsync != "on" {
		b.log.Warn("pglock: the database runs with fsync off: a crash of its host can lose grants and reissue tokens", "fsync", fsync)
	}
	if syncCommit == "off" {
		b.log.Warn("pglock: synchronous_commit is off: a database crash can lose the last grants, and a token can be issued twice", "synchronous_commit", syncCommit)
	}
	if isolation != "read committed" {
		b.log.Warn("pglock: the pool's transactions default to "+isolation+"; contended acquires will fail with serialization errors (use read committed)", "transaction_isolation", isolation)
	}
	if async > 0 {
		b.log.Warn("pglock: the database replicates asynchronously: if a standby among its replication connections is promoted after a failure, it can lose the last grants and reissue tokens; fail over only to synchronous standbys",
			"async_replication_connections", async)
	}
}

// transient reports whether err may go away by itself (the database is
// restarting, failing over or overloaded, a connection broke), so that a
// waiting Acquire should ride it out. Errors about the request itself
// (authentication, a missing database or table, privileges) are not.
func transient(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return !errors.Is(err, errSequence)
	}
	if len(pgErr.Code) != 5 {
		return false
	}
	switch pgErr.Code[:2] {
	case "08", // connection exception
		"53", // insufficient resources (too many connections, out of memory or disk)
		"57", // operator intervention (shutdown, cannot connect now, query cancelled)
		"58", // system error (I/O)
		"40": // transaction rollback (serialization failure, deadlock)
		return true
	}
	// read_only_sql_transaction: connected to a standby, during a failover.
	return pgErr.Code == "25006" || pgErr.Code == "55P03" // lock_not_available
}

// unknownOutcome reports whether a statement that failed with err may have
// been executed and committed all the same: the connection broke after it
// was sent. An error the server returned means the transaction rolled back.
func unknownOutcome(err error) bool {
	var pgErr *pgconn.PgError
	var notSent *notSentError
	return !errors.As(err, &pgErr) && !errors.As(err, &notSent) && !pgconn.SafeToRetry(err)
}

// notSentError is an error that kept a statement from being sent at all
// (no connection could be had from the pool).
type notSentError struct{ err error }

func (e *notSentError) Error() string { return e.err.Error() }
func (e *notSentError) Unwrap() error { return e.err }

// raceLost reports whether a schema creation failed because someone else
// (a migration tool, a Backend spelling the table differently) created the
// same object at the same moment: then trying again finds it.
func raceLost(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "23505" || pgErr.Code == "42P07") // unique_violation, duplicate_table
}
