package server

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// TestSimulationCloseBusyLeader crashes (cuts off, then closes) a leader
// while many requests are in flight on it, twenty times, and checks that
// Close returns and leaves no goroutine of the server waiting, although
// hashicorp/raft leaves futures still queued at shutdown unanswered
// (hashicorp/raft#498; see await).
func TestSimulationCloseBusyLeader(t *testing.T) {
	var stats simStats
	for i := range 20 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			p := newSimParams(uint64(i + 1))
			p.faults, p.logStore, p.snapshotThreshold = nil, "memory", 0
			synctest.Test(t, func(t *testing.T) {
				r := newSimRun(t, p, &stats)
				hist := r.hist
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				defer r.stop()
				if err := r.start(ctx); err != nil {
					t.Fatal(err)
				}
				l := r.cluster.leader()
				if l == nil {
					t.Fatal("no leader")
				}
				srv := l.server()
				var wg sync.WaitGroup
				for g := range 30 {
					wg.Go(func() {
						for ctx.Err() == nil {
							if g%2 == 0 {
								srv.keepAlive(ctx, []uint64{1})
							} else {
								srv.release(ctx, uint64(g+1), 0)
							}
							time.Sleep(time.Duration(1+g%3) * time.Millisecond / 2)
						}
					})
				}
				time.Sleep(time.Duration(50+7*i) * time.Millisecond)
				r.cluster.crash(l)
				cancel()
				wg.Wait()
				for _, v := range hist.violations() {
					t.Errorf("%s: %s", v.kind, v.msg)
				}
			})
		})
	}
	t.Logf("%v", &stats)
}
