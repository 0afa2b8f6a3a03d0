package procs

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestRedisReplicaAndRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	primary, err := StartRedis(ctx, dir, "primary", RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer primary.Close()
	replica, err := StartRedis(ctx, dir, "replica", RedisOptions{ReplicaOf: primary.Addr})
	if err != nil {
		t.Fatal(err)
	}
	defer replica.Close()
	if err := replica.WaitReplicaSynced(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := primary.Do(ctx, "SET", "k", "v"); err != nil {
		t.Fatal(err)
	}
	// The key reaches the replica.
	deadline := time.Now().Add(5 * time.Second)
	for {
		v, _ := replica.Do(ctx, "GET", "k")
		if v == "v" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replica never got the key: %v", v)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Restart without persistence forgets it.
	if err := primary.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if v, err := primary.Do(ctx, "GET", "k"); err == nil {
		t.Fatalf("after a restart without persistence the key is still there: %v", v)
	}
}

func TestRedisAOFKeepsKeys(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, err := StartRedis(ctx, t.TempDir(), "r1", RedisOptions{AOF: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Do(ctx, "SET", "k", "v", "PX", "60000"); err != nil {
		t.Fatal(err)
	}
	if err := r.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if v, err := r.Do(ctx, "GET", "k"); err != nil || v != "v" {
		t.Fatalf("after kill -9 and restart with AOF: %v, %v", v, err)
	}
}

func TestPostgres(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	pg, err := StartPostgres(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("SELECT 1: %v, %v", one, err)
	}
	conn.Close(ctx)
	if err := pg.Close(); err != nil {
		t.Fatal(err)
	}
	if !pg.Proc().Exited() {
		t.Fatal("postgres still runs after Close")
	}
}
