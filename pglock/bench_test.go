package pglock_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/internal/testutil"
	"github.com/fencerlock/fencer/internal/testutil/pgtest"
	"github.com/fencerlock/fencer/pglock"
)

// benchTTL is long enough that no lease expires during a benchmark.
const benchTTL = time.Minute

// BenchmarkAcquireRelease measures uncontended throughput: parallel
// goroutines, each with a lock of its own, acquire and release through one
// Backend (with fsync and synchronous_commit on, so every grant and every
// release is one durable commit; concurrent commits share fsyncs).
func BenchmarkAcquireRelease(b *testing.B) {
	srv := pgtest.Start(b, nil)
	be := open(b, srv.URL()+"&pool_max_conns=16")
	defer be.Close()
	warmUp(b, be)
	b.SetParallelism(8) // 8 goroutines per CPU, up to 16 connections
	testutil.BenchPairs(b, be, func(i int64) fencer.AcquireRequest {
		return fencer.AcquireRequest{Name: fmt.Sprintf("bench/%d", i), TTL: benchTTL}
	})
}

// BenchmarkHandOff measures a contended lock: four Backends (as four
// processes would have) take turns on one lock with waiting Acquires,
// releasing at once. It reports grants per second and the hand-off time,
// from the moment a holder sends its release to the moment the next
// holder's Acquire returns (a waiter woken by the release's notification).
func BenchmarkHandOff(b *testing.B) {
	const contenders = 4
	srv := pgtest.Start(b, nil)
	ctx := context.Background()
	var bes []*pglock.Backend
	for range contenders {
		be := open(b, srv.URL())
		defer be.Close()
		warmUp(b, be)
		bes = append(bes, be)
	}
	var (
		left        atomic.Int64 // grants still to make
		releaseSent atomic.Int64 // nanoseconds since start; 0 when unknown
		mu          sync.Mutex
		handOffs    []time.Duration
		wg          sync.WaitGroup
	)
	left.Store(int64(b.N))
	start := time.Now()
	b.ResetTimer()
	for _, be := range bes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for left.Add(-1) >= 0 {
				g, err := be.Acquire(ctx, fencer.AcquireRequest{Name: "handoff", TTL: benchTTL, Wait: true})
				if err != nil {
					b.Error(err)
					return
				}
				if sent := releaseSent.Swap(0); sent != 0 {
					d := time.Since(start) - time.Duration(sent)
					mu.Lock()
					handOffs = append(handOffs, d)
					mu.Unlock()
				}
				releaseSent.Store(int64(time.Since(start)))
				if err := be.Release(ctx, g); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "grants/s")
	if len(handOffs) > 0 {
		slices.Sort(handOffs)
		b.ReportMetric(float64(handOffs[len(handOffs)/2].Microseconds()), "p50-handoff-µs")
		b.ReportMetric(float64(handOffs[len(handOffs)*99/100].Microseconds()), "p99-handoff-µs")
	}
}

// warmUp creates the schema and fills the pool's statement caches, so the
// benchmark measures the steady state.
func warmUp(b *testing.B, be *pglock.Backend) {
	b.Helper()
	ctx := context.Background()
	for i := range 8 {
		g, err := be.Acquire(ctx, fencer.AcquireRequest{Name: fmt.Sprintf("warm-up/%d", i), TTL: benchTTL, Wait: i%2 == 0})
		if err != nil {
			b.Fatal(err)
		}
		if err := be.Release(ctx, g); err != nil {
			b.Fatal(err)
		}
	}
}
