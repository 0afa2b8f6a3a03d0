package redlock_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/internal/testutil/redistest"
	"github.com/fencerlock/fencer/redlock"
)

func benchBackend(b *testing.B, n int) *redlock.Backend {
	b.Helper()
	cs := make([]redis.UniversalClient, n)
	for i := range cs {
		srv := redistest.Start(b, nil)
		cs[i] = redis.NewClient(&redis.Options{Addr: srv.Addr, ContextTimeoutEnabled: true})
	}
	// A generous node timeout: the machine is shared, and a benchmark that
	// fails because a busy scheduler held a reply 50 ms measures nothing.
	// Healthy nodes answer long before either timeout.
	be, err := redlock.New(redlock.Config{Clients: cs, NodeTimeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		be.Close()
		for _, c := range cs {
			c.Close()
		}
	})
	return be
}

// BenchmarkAcquireRelease measures uncontended acquire+release pairs over 3
// and 5 real redis-servers: every goroutine takes and gives back its own
// lock; each call is one parallel round trip to every node. One op is one
// pair.
func BenchmarkAcquireRelease(b *testing.B) {
	for _, n := range []int{3, 5} {
		b.Run(strconv.Itoa(n)+"Nodes", func(b *testing.B) {
			be := benchBackend(b, n)
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
		})
	}
}

// BenchmarkAcquireReleaseContended measures hand-offs of one lock among
// all the goroutines, which wait for it. One op is one pair.
func BenchmarkAcquireReleaseContended(b *testing.B) {
	for _, n := range []int{3, 5} {
		b.Run(strconv.Itoa(n)+"Nodes", func(b *testing.B) {
			be := benchBackend(b, n)
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
		})
	}
}
