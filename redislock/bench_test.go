package redislock_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/internal/testutil"
	"github.com/fencerlock/fencer/internal/testutil/redistest"
	"github.com/fencerlock/fencer/redislock"
)

func benchBackend(b *testing.B, srv *redistest.Server) *redislock.Backend {
	b.Helper()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr, ContextTimeoutEnabled: true})
	be, err := redislock.New(redislock.Config{Client: c})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		be.Close()
		c.Close()
	})
	return be
}

// BenchmarkAcquireRelease measures uncontended acquire+release pairs: every
// goroutine takes and gives back its own lock, each a round trip, against a
// real redis-server. One op is one pair.
func BenchmarkAcquireRelease(b *testing.B) {
	srv := redistest.Start(b, nil)
	be := benchBackend(b, srv)
	b.ReportAllocs()
	testutil.BenchPairs(b, be, func(i int64) fencer.AcquireRequest {
		return fencer.AcquireRequest{Name: "bench-" + strconv.FormatInt(i, 10), TTL: 10 * time.Second}
	})
}

// BenchmarkAcquireReleaseContended measures hand-offs of one lock among
// all the goroutines, which wait for it (pub/sub wake-ups). One op is one
// pair.
func BenchmarkAcquireReleaseContended(b *testing.B) {
	srv := redistest.Start(b, nil)
	be := benchBackend(b, srv)
	b.ReportAllocs()
	testutil.BenchPairs(b, be, func(int64) fencer.AcquireRequest {
		return fencer.AcquireRequest{Name: "contended", TTL: 10 * time.Second, Wait: true}
	})
}
