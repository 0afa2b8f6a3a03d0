package pgproc_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/fencerlock/fencer/internal/pgproc"
	"github.com/fencerlock/fencer/internal/testutil"
)

// TestMain fails the tests if a goroutine outlives them.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestStartRestartClose(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := pgproc.Start(ctx, pgproc.Options{Port: testutil.FreePort(t), LogDir: t.TempDir(), Database: "other"})
	if err != nil {
		t.Fatal(err)
	}
	query := func(sql string, dst ...any) {
		t.Helper()
		conn, err := pgx.Connect(ctx, s.URL())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if len(dst) == 0 {
			_, err = conn.Exec(ctx, sql)
		} else {
			err = conn.QueryRow(ctx, sql).Scan(dst...)
		}
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	var db string
	if query("SELECT current_database()", &db); db != "other" {
		t.Fatalf("current_database() = %q; want other", db)
	}
	query("CREATE TABLE kv (k text PRIMARY KEY)")
	query("INSERT INTO kv VALUES ('a')")

	// A crash and restart keep what was committed.
	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	var n int
	if query("SELECT count(*) FROM kv", &n); n != 1 {
		t.Fatalf("after Restart: %d rows; want 1", n)
	}

	proc := s.Proc()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if !proc.Exited() {
		t.Error("the postmaster still runs after Close")
	}
	if _, err := os.Stat(s.Dir); !os.IsNotExist(err) {
		t.Errorf("the server's directory is still there after Close: %v", err)
	}
}

func TestStartNeedsPortAndLogDir(t *testing.T) {
	for _, opts := range []pgproc.Options{{LogDir: t.TempDir()}, {Port: 5432}} {
		if s, err := pgproc.Start(context.Background(), opts); err == nil {
			s.Close()
			t.Errorf("Start(%+v) succeeded; want an error", opts)
		}
	}
}
