package testutil

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/fencerlock/fencer"
)

// BenchPairs measures acquire+release pairs on be, one op a pair: every
// goroutine of b.RunParallel acquires req(i), where i numbers the
// goroutines from 1, and releases the grant at once. Give every goroutine
// a lock of its own for uncontended pairs, one lock with Wait for
// hand-offs. BenchPairs resets the timer first and reports pairs/s; set
// the parallelism and ReportAllocs before calling it.
func BenchPairs(b *testing.B, be fencer.Backend, req func(i int64) fencer.AcquireRequest) {
	b.Helper()
	var id atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		r := req(id.Add(1))
		for pb.Next() {
			g, err := be.Acquire(ctx, r)
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
