package server

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// The control family: a clock beyond the clients' drift budget, where the
// belief check must fire. A check that never fires proves nothing.
//
// Client c1 holds lock "ctl" and c2 waits for it. Right after c1's first
// renewal is acknowledged, c1 pauses (as in a GC pause) for two TTLs, the
// followers' clocks start running fast, and the leader is paused (cut off
// from every node and client). A follower takes over and, as designed,
// restarts c1's session at a full TTL, but on a clock running 20% fast, so
// the session expires after TTL/1.2 of real time and c2 is granted while c1
// still believes its lease valid (until its renewal's send + TTL - 2% -
// 3ms). The checker must report that overlap, and c2's token must still be
// above c1's, so that a fenced store rejects c1's late writes.
//
// Each seed also runs a twin at the edge of the budget (+0.5%) that must
// produce no overlap: the margin, not luck, is what protects.

func newSimControlParams(seed uint64, rate float64) *simParams {
	rng := rand.New(rand.NewPCG(seed, 0xc0))
	p := &simParams{
		seed:        seed,
		control:     true,
		ctlRate:     rate,
		nodes:       3,
		heartbeat:   time.Duration(50+rng.IntN(51)) * time.Millisecond,
		logStore:    "memory",
		clients:     2,
		locks:       []string{"ctl"},
		netDelay:    time.Duration(rng.IntN(2000)) * time.Microsecond,
		clientDelay: time.Duration(rng.IntN(2000)) * time.Microsecond,
		nodeRates:   []float64{0, 0, 0},
		clientRates: []float64{0, 0},
	}
	p.ttlMin = time.Duration(3000+rng.IntN(2001)) * time.Millisecond
	p.ttlMax = p.ttlMin
	// The script ends well within this.
	p.runFor = 4 * p.ttlMax
	return p
}

// simControlScript is the control scenario; see the top of the file.
func simControlScript(ctx context.Context, r *simRun) {
	h, ttl := r.hist, r.p.ttlMin
	c1, c2 := r.clients[0], r.clients[1]

	var g1 *simHold
	var anchor1 time.Time
	for g1 == nil && ctx.Err() == nil {
		g1, anchor1 = c1.acquire(ctx, acquireArgs{session: c1.rng.Uint64() | 1, name: "ctl", ttl: ttl}, 0)
	}
	if g1 == nil {
		return
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		// Give c1's grant a head start, then queue behind it.
		c2.sleep(ctx, 20*time.Millisecond)
		if g2, anchor2 := c2.acquire(ctx, acquireArgs{session: c2.rng.Uint64() | 1, name: "ctl", ttl: ttl, wait: true}, 3*ttl); g2 != nil {
			c2.keep(ctx, g2, anchor2, ttl/2)
		}
	})
	var once sync.Once
	c1.onRenew = func() {
		once.Do(func() {
			c1.pause(2 * ttl)
			l := r.cluster.leader()
			if l == nil {
				h.logf("control: no leader at c1's renewal")
				return
			}
			for _, n := range r.cluster.nodes {
				if n != l {
					n.clock.setRate(r.p.ctlRate)
				}
			}
			h.logf("control: c1 paused for %v; the followers' clocks run %+.1f%%; %s paused", 2*ttl, 100*r.p.ctlRate, l.id)
			r.net.cutLinks([]string{l.id}, simIDs(r.cluster.nodes), true, false)
			for _, c := range r.clients {
				r.net.cutClient(c.id, l.id, false)
			}
		})
	}
	c1.keep(ctx, g1, anchor1, 3*ttl)
}

// TestSimulationControl runs the control family (see the top of the file).
func TestSimulationControl(t *testing.T) {
	n := *simControlsFlag
	if n == 0 {
		n = simDefaultControls
		if testing.Short() {
			n = min(n, 3)
		}
	}
	seeds := make([]uint64, n)
	for i := range seeds {
		seeds[i] = uint64(i + 1)
	}
	if *simSeedFlag != 0 {
		seeds = []uint64{*simSeedFlag}
	}
	var stats simStats
	for _, seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Parallel()
			for _, tc := range []struct {
				rate    float64
				overlap bool
			}{
				{0.20, true},           // beyond the budget: the check must fire
				{simRateBudget, false}, // at its edge: nothing may fire
			} {
				p := newSimControlParams(seed, tc.rate)
				synctest.Test(t, func(t *testing.T) {
					hist := runSim(t, p, &stats, simControlScript)
					overlaps := hist.count(vOverlap)
					others := len(hist.violations()) - overlaps
					switch {
					case tc.overlap && overlaps == 0:
						t.Error(simReport(p, hist, fmt.Sprintf("the leader's clock ran %+.0f%% and the checker found no believed overlap: a check that never fires proves nothing", 100*tc.rate)))
					case !tc.overlap && overlaps > 0:
						t.Error(simReport(p, hist, fmt.Sprintf("a believed overlap with clocks within the budget (%+.1f%%)", 100*tc.rate)))
					case others > 0:
						// Above all: tokens still strictly increase.
						t.Error(simReport(p, hist, simKinds(hist.violations())))
					case *simTraceFlag || *simSeedFlag != 0:
						t.Logf("control seed %d at %+.1f%%: %d overlaps, as expected\nschedule:\n%strace:\n%s", seed, 100*tc.rate, overlaps, p, hist.trace(0))
					}
				})
			}
		})
	}
}
