// Package fencepg keeps fencing floors in PostgreSQL: a fence.FloorStore
// over a table, and Check, which fences a write inside the caller's own
// transaction.
//
// Client 1 gets a lock with token 33 and pauses past its lease; client 2
// gets token 34 and writes; client 1 wakes up and writes with 33. With
// Check as the first statement of every transaction that acts under the
// lock, client 1's transaction finds the floor at 34 and fails with a
// *fence.StaleError, and it rolls back with nothing written:
//
//	tx, err := pool.Begin(ctx)
//	if err != nil { ... }
//	defer tx.Rollback(ctx)
//	if err := fencepg.Check(ctx, tx, "account/42", lease.Token()); err != nil {
//		return err // errors.Is(err, fence.ErrStale): our lease is gone
//	}
//	if _, err := tx.Exec(ctx, "UPDATE accounts SET balance = $1 WHERE id = 42", b); err != nil { ... }
//	return tx.Commit(ctx)
//
// Because the floor is raised in the same transaction as the write, both
// commit or neither does, and the row lock Check takes on the floor orders
// the fenced transactions of a resource: a newer holder's transaction
// waits for an older one still in flight, then sees its floor.
//
// The floors live in the table fence_floors (CreateTable makes it):
//
//	CREATE TABLE fence_floors (resource text PRIMARY KEY, token bigint NOT NULL)
//
// bigint is signed, so tokens above math.MaxInt64 are refused with a
// *fencer.InvalidError rather than stored wrapped around to negative
// numbers, which would compare wrong. No backend of this module issues
// such tokens.
package fencepg
