package redlock_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/internal/testutil"
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
			b.ReportAllocs()
			testutil.BenchPairs(b, be, func(i int64) fencer.AcquireRequest {
				return fencer.AcquireRequest{Name: "bench-" + strconv.FormatInt(i, 10), TTL: 10 * time.Second}
			})
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
			testutil.BenchPairs(b, be, func(int64) fencer.AcquireRequest {
				return fencer.AcquireRequest{Name: "contended", TTL: 10 * time.Second, Wait: true}
			})
		})
	}
}
