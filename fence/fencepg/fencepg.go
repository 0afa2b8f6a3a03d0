package fencepg

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/fence"
)

// Schema creates the floors table if it does not exist.
const Schema = `CREATE TABLE IF NOT EXISTS fence_floors (
	resource text PRIMARY KEY,
	token bigint NOT NULL CHECK (token > 0)
)`

// raiseSQL raises the floor of $1 to $2 if $2 is at least the floor (or
// the resource has none yet), atomically: concurrent raises of one
// resource queue on its row. It returns no row when the token is stale;
// the conflicting row is locked all the same, until the transaction ends.
const raiseSQL = `INSERT INTO fence_floors AS f (resource, token) VALUES ($1, $2)
ON CONFLICT (resource) DO UPDATE SET token = excluded.token
WHERE excluded.token >= f.token
RETURNING f.token`

const loadSQL = `SELECT token FROM fence_floors WHERE resource = $1`

// DB is what fencepg needs from a connection: *pgxpool.Pool, *pgx.Conn and
// pgx.Tx all have it.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// CreateTable creates the fence_floors table (Schema) if it does not
// exist. Run it once, at deployment or start-up: two CREATE TABLE IF NOT
// EXISTS racing from different sessions can fail with a unique violation.
func CreateTable(ctx context.Context, db DB) error {
	if _, err := db.Exec(ctx, Schema); err != nil {
		return fmt.Errorf("fencepg: create table fence_floors: %w", err)
	}
	return nil
}

// Store is a fence.FloorStore in the fence_floors table. Every Raise is
// its own statement, committed (and so durable, with PostgreSQL's default
// synchronous_commit) before it returns. Several processes, such as the
// replicas of one storage service, can share one table: PostgreSQL keeps
// each resource's floor consistent between them.
//
// A Store is as safe for concurrent use as its DB (a *pgxpool.Pool is). It
// owns nothing and needs no cleanup.
type Store struct {
	db DB
}

var _ fence.FloorStore = (*Store)(nil)

// NewStore returns a Store using db, typically a *pgxpool.Pool. The table
// must exist (CreateTable).
func NewStore(db DB) *Store { return &Store{db: db} }

// Load returns the floor of resource, or 0.
func (s *Store) Load(ctx context.Context, resource string) (fencer.Token, error) {
	var t int64
	err := s.db.QueryRow(ctx, loadSQL, resource).Scan(&t)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("fencepg: load the floor of %q: %w", resource, err)
	}
	return fencer.Token(t), nil
}

// Raise implements fence.FloorStore. It returns a *fencer.InvalidError for
// a token above math.MaxInt64.
func (s *Store) Raise(ctx context.Context, resource string, token fencer.Token) (fencer.Token, bool, error) {
	return raise(ctx, s.db, resource, token)
}

func raise(ctx context.Context, db DB, resource string, token fencer.Token) (fencer.Token, bool, error) {
	if token > math.MaxInt64 {
		return 0, false, &fencer.InvalidError{Field: "token", Value: token.String(),
			Reason:   "above 9223372036854775807, the largest a PostgreSQL bigint holds",
			Accepted: "a token from 1 to 9223372036854775807 with a PostgreSQL floor store"}
	}
	var floor int64
	err := db.QueryRow(ctx, raiseSQL, resource, int64(token)).Scan(&floor)
	if err == nil {
		return fencer.Token(floor), true, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return 0, false, fmt.Errorf("fencepg: raise the floor of %q to %d: %w", resource, token, err)
	}
	// Stale. Read the floor that refused it; in a transaction the raise
	// above holds the row's lock, so this is that very floor, and outside
	// one it can only have risen since.
	err = db.QueryRow(ctx, loadSQL, resource).Scan(&floor)
	if err != nil {
		return 0, false, fmt.Errorf("fencepg: read the floor of %q that refused token %d: %w", resource, token, err)
	}
	return fencer.Token(floor), false, nil
}

// Check fences the transaction tx: it accepts token if it is at least the
// floor of resource and raises the floor to it, inside tx, so that the
// floor commits or rolls back with the caller's own writes. Call it before
// those writes, and roll back on any error. It returns:
//
//   - nil: go ahead; the row lock Check took on the floor makes a newer
//     holder's Check wait until tx ends;
//   - a *fence.StaleError (matching fence.ErrStale) when a higher token has
//     been seen: the lease of the caller is gone;
//   - a *fencer.InvalidError for an invalid resource (fence.ValidateResource),
//     token 0, or a token above math.MaxInt64;
//   - a database error otherwise; in a REPEATABLE READ or SERIALIZABLE
//     transaction that includes a serialization failure when another
//     transaction raised the floor concurrently: retry the transaction.
//
// The fence_floors table must exist (CreateTable).
func Check(ctx context.Context, tx pgx.Tx, resource string, token fencer.Token) error {
	if err := fence.ValidateResource(resource); err != nil {
		return err
	}
	if token == fencer.NoToken {
		return &fencer.InvalidError{Field: "token", Value: "0", Reason: "0 means no token",
			Accepted: "the token of a lock grant, from 1 to " + strconv.FormatInt(math.MaxInt64, 10)}
	}
	floor, ok, err := raise(ctx, tx, resource, token)
	if err != nil {
		return err
	}
	if !ok {
		return &fence.StaleError{Resource: resource, Token: token, Floor: floor}
	}
	return nil
}
