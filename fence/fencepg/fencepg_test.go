package fencepg_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/fence"
	"github.com/fencerlock/fencer/fence/fencepg"
	"github.com/fencerlock/fencer/fence/fencetest"
	"github.com/fencerlock/fencer/internal/testutil/pgtest"
)

// startDB starts a PostgreSQL server with the floors table and returns a
// pool of up to conns connections to it.
func startDB(t *testing.T, conns int32) *pgxpool.Pool {
	t.Helper()
	srv := pgtest.Start(t, nil)
	cfg, err := pgxpool.ParseConfig(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = conns
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := fencepg.CreateTable(context.Background(), pool); err != nil {
		t.Fatal(err)
	}
	return pool
}

func TestConformance(t *testing.T) {
	store := fencepg.NewStore(startDB(t, 16))
	fencetest.TestFloorStore(t, func(*testing.T) fence.FloorStore { return store })
}

func TestLargeTokenRefused(t *testing.T) {
	store := fencepg.NewStore(startDB(t, 2))
	_, _, err := store.Raise(context.Background(), "x", math.MaxInt64+1)
	if !errors.Is(err, fencer.ErrInvalid) || !strings.Contains(err.Error(), "bigint") {
		t.Fatalf("Raise(MaxInt64+1): %v; want an InvalidError about bigint", err)
	}
	// The Guard passes it through as is.
	err = fence.NewGuard(store).Check(context.Background(), "x", math.MaxUint64)
	if !errors.Is(err, fencer.ErrInvalid) {
		t.Fatalf("Guard.Check(MaxUint64): %v, want ErrInvalid", err)
	}
}

// TestCheckConcurrent runs fenced transactions on one row with tokens in
// random order: each checks its token, then writes the row and appends its
// token to the row's history. The stale ones must roll back, so the
// history (the commit order of the writes, since they queue on the row)
// rises strictly, and the last write is the highest token's.
func TestCheckConcurrent(t *testing.T) {
	const workers, tokens = 12, 120
	pool := startDB(t, workers)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `CREATE TABLE docs (id int PRIMARY KEY, body text, written_by bigint, history bigint[])`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO docs VALUES (1, '', 0, '{}')`); err != nil {
		t.Fatal(err)
	}
	// Tokens arrive roughly in order, each delayed by up to 12 places, as
	// requests from holders that paused or whose packets were slow.
	order := make([]int, tokens)
	for i := range order {
		order[i] = i
	}
	for i := range order {
		j := min(tokens-1, i+rand.IntN(12))
		order[i], order[j] = order[j], order[i]
	}
	work := make(chan fencer.Token)
	var mu sync.Mutex
	var committed, stale []fencer.Token
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for tok := range work {
				err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
					if err := fencepg.Check(ctx, tx, "doc/1", tok); err != nil {
						return err
					}
					_, err := tx.Exec(ctx, `UPDATE docs SET body = $1, written_by = $2::bigint, history = history || $2::bigint WHERE id = 1`,
						fmt.Sprint("written with token ", tok), int64(tok))
					return err
				})
				mu.Lock()
				switch {
				case err == nil:
					committed = append(committed, tok)
				case errors.Is(err, fence.ErrStale):
					stale = append(stale, tok)
				default:
					t.Errorf("token %d: %v", tok, err)
				}
				mu.Unlock()
			}
		})
	}
	for _, i := range order {
		work <- fencer.Token(i + 1)
	}
	close(work)
	wg.Wait()

	var body string
	var writtenBy int64
	var history []int64
	if err := pool.QueryRow(ctx, `SELECT body, written_by, history FROM docs WHERE id = 1`).Scan(&body, &writtenBy, &history); err != nil {
		t.Fatal(err)
	}
	if writtenBy != tokens || body != fmt.Sprint("written with token ", tokens) {
		t.Fatalf("the row was last written with token %d (%q); want the highest, %d", writtenBy, body, tokens)
	}
	if len(history) != len(committed) {
		t.Fatalf("history has %d writes, %d transactions committed", len(history), len(committed))
	}
	for i := 1; i < len(history); i++ {
		if history[i] <= history[i-1] {
			t.Fatalf("write with token %d committed after %d: %v", history[i], history[i-1], history)
		}
	}
	if len(committed)+len(stale) != tokens || len(stale) == 0 {
		t.Fatalf("%d committed, %d stale, of %d", len(committed), len(stale), tokens)
	}
	floor, err := fencepg.NewStore(pool).Load(ctx, "doc/1")
	if err != nil || floor != tokens {
		t.Fatalf("floor = %d, %v; want %d", floor, err, tokens)
	}
	slices.Sort(committed)
	t.Logf("%d transactions committed (%v...), %d stale ones rolled back", len(committed), committed[:min(5, len(committed))], len(stale))
}

// TestCheckRollsBackWithTheWrite checks that the floor is part of the
// caller's transaction: when the caller's own write fails, the floor it
// raised is rolled back too, and the token can be used again.
func TestCheckRollsBackWithTheWrite(t *testing.T) {
	pool := startDB(t, 4)
	ctx := context.Background()
	store := fencepg.NewStore(pool)
	if _, _, err := store.Raise(ctx, "r", 5); err != nil {
		t.Fatal(err)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := fencepg.Check(ctx, tx, "r", 9); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT 1/0"); err == nil { // the caller's write fails
		t.Fatal("division by zero succeeded")
	}
	tx.Rollback(ctx)
	if f, _ := store.Load(ctx, "r"); f != 5 {
		t.Fatalf("floor after rollback = %d, want 5", f)
	}

	// The stale path: errors name both tokens, and the row lock is held
	// (a concurrent raise waits for the transaction).
	tx, err = pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	err = fencepg.Check(ctx, tx, "r", 3)
	var se *fence.StaleError
	if !errors.As(err, &se) || se.Token != 3 || se.Floor != 5 || !strings.Contains(err.Error(), "token 3 is stale") {
		t.Fatalf("Check(3) with floor 5: %v", err)
	}
	for _, tc := range []struct {
		res string
		tok fencer.Token
	}{{"", 1}, {"r", 0}, {"r", math.MaxInt64 + 1}} {
		if err := fencepg.Check(ctx, tx, tc.res, tc.tok); !errors.Is(err, fencer.ErrInvalid) {
			t.Errorf("Check(%q, %d): %v, want ErrInvalid", tc.res, tc.tok, err)
		}
	}
}

func BenchmarkStoreRaise(b *testing.B) {
	srv := pgtest.Start(b, nil)
	pool := srv.Pool(b)
	if err := fencepg.CreateTable(context.Background(), pool); err != nil {
		b.Fatal(err)
	}
	g := fence.NewGuard(fencepg.NewStore(pool))
	var mu sync.Mutex
	id := 0
	b.RunParallel(func(pb *testing.PB) {
		mu.Lock()
		id++
		r := fmt.Sprint("res", id)
		mu.Unlock()
		tok := fencer.Token(1)
		for pb.Next() {
			tok++
			if err := g.Check(context.Background(), r, tok); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
