package fencepg_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/fence"
	"github.com/fencerlock/fencer/fence/fencepg"
)

// A service keeps its data in PostgreSQL and fences each transaction with
// Check, so a write and its floor commit together. Client 1 (token 33) is
// paused past its lease; client 2 (token 34) transfers; client 1 wakes up
// and its transaction is refused and rolled back.
func ExampleCheck() {
	ctx := context.Background()
	// A real service connects with pgxpool.New(ctx, url); the example
	// starts its own PostgreSQL server.
	pool, stop := examplePool()
	defer stop()

	pool.Exec(ctx, `CREATE TABLE accounts (id int PRIMARY KEY, balance int)`)
	pool.Exec(ctx, `INSERT INTO accounts VALUES (42, 100)`)
	if err := fencepg.CreateTable(ctx, pool); err != nil {
		fmt.Println(err)
		return
	}

	withdraw := func(token fencer.Token, amount int) error {
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if err := fencepg.Check(ctx, tx, "account/42", token); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `UPDATE accounts SET balance = balance - $1 WHERE id = 42`, amount)
			return err
		})
	}
	fmt.Println(withdraw(34, 10))
	err := withdraw(33, 10)
	fmt.Println(errors.Is(err, fence.ErrStale))

	var balance int
	pool.QueryRow(ctx, `SELECT balance FROM accounts WHERE id = 42`).Scan(&balance)
	fmt.Println("balance", balance)
	// Output:
	// <nil>
	// true
	// balance 90
}
