package pglock_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/pglock"
)

// A Client over PostgreSQL hands out leases whose tokens are safe to fence
// a storage service with. The first grant on a new database has token 1;
// a try of the held lock fails without using a token up; the next grant
// has token 2.
func Example() {
	ctx := context.Background()
	// A real service opens its own database's URL; the example starts a
	// PostgreSQL server of its own.
	url, stop := exampleServer()
	defer stop()

	b, err := pglock.Open(ctx, url)
	if err != nil {
		fmt.Println(err)
		return
	}
	c := fencer.New(b, nil)
	defer c.Close()

	lease, err := c.Acquire(ctx, "invoices", &fencer.Options{Require: fencer.Correctness})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("token", lease.Token(), "safe", lease.SafeToken())

	_, err = c.TryAcquire(ctx, "invoices", nil)
	fmt.Println("held:", errors.Is(err, fencer.ErrLocked))

	if err := lease.Release(ctx); err != nil {
		fmt.Println(err)
		return
	}
	lease, err = c.Acquire(ctx, "invoices", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("token", lease.Token())
	lease.Release(ctx)
	// Output:
	// token 1 safe true
	// held: true
	// token 2
}

// New takes a pool the application already has, and options: here a
// table in a schema of its own and a logger for the backend's warnings.
// The pool stays the application's: close it after the Client.
func ExampleNew() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://app@db.internal/app")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pool.Close()
	b, err := pglock.New(ctx, pglock.Config{
		Pool:       pool,
		Table:      "locking.fencer_locks",
		MaxBackoff: 2 * time.Second,
		Logger:     slog.Default(),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	c := fencer.New(b, nil)
	defer c.Close()
	// ... c.Acquire(ctx, "nightly-report", &fencer.Options{Require: fencer.Correctness})
}
