package pglock_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/backends"
	"github.com/fencerlock/fencer/internal/testutil/pgtest"
	"github.com/fencerlock/fencer/locktest"
	"github.com/fencerlock/fencer/pglock"
)

// TestConformance runs the suite every fencer backend passes against a real
// PostgreSQL server.
func TestConformance(t *testing.T) {
	locktest.Run(t, locktest.Harness{Start: startTarget})
}

func startTarget(t *testing.T) *locktest.Target {
	srv := pgtest.Start(t, nil)
	admin := srv.Pool(t)
	return &locktest.Target{
		New: func(t *testing.T) fencer.Backend {
			return open(t, srv.URL())
		},
		URL: crossProcessURL(t, srv.URL()),
		Delete: func(t *testing.T, name string) {
			t.Helper()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			tag, err := admin.Exec(ctx, `DELETE FROM fencer_locks WHERE name = $1`, name)
			if err != nil || tag.RowsAffected() != 1 {
				t.Fatalf("delete lock %q behind its holder's back: %v, %d rows", name, err, tag.RowsAffected())
			}
		},
		Outage: func(t *testing.T) {
			srv.Pause()
			// Resumed before the test's clients are closed (cleanups run in
			// reverse order), so that their releases do not wait for a
			// timeout.
			t.Cleanup(srv.Resume)
		},
	}
}

// open returns a Backend for url that the caller closes (the suite closes
// the ones it gets from Target.New).
func open(t testing.TB, url string) *pglock.Backend {
	t.Helper()
	b, err := pglock.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// crossProcessURL returns url if `fencer run` can open it, and "" (which
// skips the cross-process test) while package backends does not know the
// postgres:// scheme yet.
func crossProcessURL(t *testing.T, url string) string {
	b, err := backends.Open(context.Background(), url)
	if errors.Is(err, fencer.ErrInvalid) {
		t.Logf("package backends does not open %s yet (%v): the cross-process test is skipped", url, err)
		return ""
	}
	if err != nil {
		t.Fatalf("backends.Open(%s): %v", url, err)
	}
	b.Close()
	return url
}
