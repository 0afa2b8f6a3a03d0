package redislock

import (
	"context"
	"testing"
	"time"

	"github.com/fencerlock/fencer/internal/rediskey"
	"github.com/fencerlock/fencer/internal/testutil/redistest"
)

// TestAcquireScriptIdempotent: go-redis retries a command after some
// network errors. A retry of an acquire that did run must return the same
// grant, not report the owner's own lock as held by another.
func TestAcquireScriptIdempotent(t *testing.T) {
	srv := redistest.Start(t, nil)
	b, err := New(Config{Client: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a := attempt{name: "idem", value: rediskey.NewValue(), ttl: 10000}
	a.lock, a.counter = b.keys(a.name)
	first, _, err := b.try(ctx, &a)
	if err != nil || first <= 0 {
		t.Fatalf("first run: token %d, %v", first, err)
	}
	again, _, err := b.try(ctx, &a)
	if err != nil || again != first {
		t.Fatalf("the same run again: token %d, %v; want %d", again, err, first)
	}
	other := attempt{name: "idem", value: rediskey.NewValue(), ttl: 10000, lock: a.lock, counter: a.counter}
	tok, pttl, err := b.try(ctx, &other)
	if err != nil || tok != 0 || pttl <= 0 || pttl > 10*time.Second {
		t.Fatalf("another owner's run: token %d, pttl %v, %v; want held, expiring within 10s", tok, pttl, err)
	}
}
