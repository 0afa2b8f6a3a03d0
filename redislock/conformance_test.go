package redislock_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/internal/testutil/redistest"
	"github.com/fencerlock/fencer/locktest"
	"github.com/fencerlock/fencer/redislock"
)

// TestConformance runs the suite every fencer backend passes against a real
// redis-server.
func TestConformance(t *testing.T) {
	locktest.Run(t, locktest.Harness{Start: startTarget})
}

func startTarget(t *testing.T) *locktest.Target {
	srv := redistest.Start(t, nil)
	return &locktest.Target{
		New: func(t *testing.T) fencer.Backend {
			b, err := redislock.Open(srv.URL())
			if err != nil {
				t.Fatal(err)
			}
			return b
		},
		URL: srv.URL(),
		Delete: func(t *testing.T, name string) {
			t.Helper()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c := srv.Client()
			if err := c.Del(ctx, keyOf(t, c, name)).Err(); err != nil {
				t.Fatalf("delete lock %q: %v", name, err)
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

// keyOf returns the lock key of name under the default configuration.
func keyOf(t *testing.T, c redis.UniversalClient, name string) string {
	t.Helper()
	b, err := redislock.New(redislock.Config{Client: c})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	return b.Key(name)
}
