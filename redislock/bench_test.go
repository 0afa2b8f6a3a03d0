package redislock_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fencerlock/fencer"
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
	var id atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		req := fencer.AcquireRequest{Name: "bench-" + strconv.FormatInt(id.Add(1), 10), TTL: 10 * time.Second}
		for pb.Next() {
			g, err := be.Acquire(ctx, req)
			if err != nil {
				b.Error(err)
				return
			}
			if err := be.Release(ctx, g); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pairs/s")
}

// BenchmarkAcquireReleaseContended measures hand-offs of one lock among
// all the goroutines, which wait for it (pub/sub wake-ups). One op is one
// pair.
func BenchmarkAcquireReleaseContended(b *testing.B) {
	srv := redistest.Start(b, nil)
	be := benchBackend(b, srv)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		req := fencer.AcquireRequest{Name: "contended", TTL: 10 * time.Second, Wait: true}
		for pb.Next() {
			g, err := be.Acquire(ctx, req)
			if err != nil {
				b.Error(err)
				return
			}
			if err := be.Release(ctx, g); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pairs/s")
}
