package pgtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/fencerlock/fencer/internal/testutil/pgtest"
)

func TestServer(t *testing.T) {
	ctx := context.Background()
	start := time.Now()
	s := pgtest.Start(t, nil)
	t.Logf("%s started in %v", s, time.Since(start))
	pool := s.Pool(t)
	if _, err := pool.Exec(ctx, "CREATE TABLE kv (k text PRIMARY KEY, v int)"); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "INSERT INTO kv VALUES ('a', 1)"); err != nil {
		t.Fatal(err)
	}
	var fsync string
	if err := pool.QueryRow(ctx, "SHOW fsync").Scan(&fsync); err != nil || fsync != "on" {
		t.Fatalf("fsync = %q, %v; want on", fsync, err)
	}

	// Paused: a query times out. Resumed: it answers.
	s.Pause()
	qctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err := pool.Exec(qctx, "SELECT 1")
	cancel()
	if err == nil {
		t.Fatal("a query to a paused server succeeded")
	}
	s.Resume()

	// A crash keeps what was committed.
	s.Restart()
	pool = s.Pool(t)
	var v int
	if err := pool.QueryRow(ctx, "SELECT v FROM kv WHERE k = 'a'").Scan(&v); err != nil || v != 1 {
		t.Fatalf("after Restart: v = %d, %v; want 1", v, err)
	}
}

func TestOptions(t *testing.T) {
	s := pgtest.Start(t, &pgtest.Options{NoFsync: true, Database: "other", Settings: []string{"max_connections=20"}})
	var db, fsync, maxConns string
	err := s.Pool(t).QueryRow(context.Background(), "SELECT current_database(), current_setting('fsync'), current_setting('max_connections')").Scan(&db, &fsync, &maxConns)
	if err != nil || db != "other" || fsync != "off" || maxConns != "20" {
		t.Fatalf("database %q, fsync %q, max_connections %q, %v", db, fsync, maxConns, err)
	}
}

func TestParallelServers(t *testing.T) {
	for _, name := range []string{"a", "b", "c"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := pgtest.Start(t, nil)
			var one int
			if err := s.Pool(t).QueryRow(context.Background(), "SELECT 1").Scan(&one); err != nil {
				t.Fatal(err)
			}
		})
	}
}
