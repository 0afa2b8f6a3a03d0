package scenario

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/fencerlock/fencer/internal/check/analyze"
	"github.com/fencerlock/fencer/internal/check/harness"
	"github.com/fencerlock/fencer/internal/check/traffic"
	"github.com/fencerlock/fencer/internal/faults/netproxy"
	"github.com/fencerlock/fencer/internal/history"
)

// validityDelay is the one-way delay on the slow client's links to the
// lock service: every round trip of its acquire costs twice that.
const validityDelay = 250 * time.Millisecond

// DESIGN.md 7: a slow acquire leaves less validity than the TTL.
func validity() *Scenario {
	why := "the client measures validity from the moment it sent the request that produced the grant, so after a slow acquire it knows how little of the TTL is left (Lease.ValidUntil, Lease.Remaining)"
	return &Scenario{
		Name:   "validity",
		Title:  "client 1 takes a 3 s lock over links that add 0.5 s to every round trip; the time the acquire took comes off the lease's validity, and the holder knows it",
		Source: "DESIGN.md 7; \"Explain Redlock in Depth\" (seed 003): \"if you want to lock for 3 seconds, but actually only 2 seconds or less are left\"",
		Cases: []Case{
			with(fencerSafe, why),
			with(pgSafe, why),
			with(redisSafe, why),
			{Backend: "redlock", Setup: harness.Setup{Kind: harness.KindRedlock}, Expected: analyze.ExpectSafe,
				Why: why + "; Redlock's own rule is the same: TTL − elapsed − drift (with a node timeout above the delay)"},
		},
		Run: func(ctx context.Context, env *harness.Env, p Params) error {
			// One warm-up iteration (connections, schema), then the slow one.
			if err := env.StartWorker(ctx, harness.WorkerSpec{Name: "c1", Iterations: 2, TTL: 3 * time.Second,
				Failpoints: stopAt(traffic.PointBeforeRelease), RedlockNodeTimeout: 2 * time.Second,
				AcquireTimeout: 30 * time.Second}); err != nil {
				return err
			}
			if err := waitStopped(ctx, env, "c1", 30*time.Second); err != nil {
				return err
			}
			for _, n := range env.Nodes() {
				if err := env.SetLink("c1", n, netproxy.Delay(netproxy.Both, validityDelay, 0)); err != nil {
					return err
				}
			}
			if err := env.Resume("c1"); err != nil {
				return err
			}
			return waitWorkers(ctx, env, 60*time.Second)
		},
		Check: checkValidity,
	}
}

// checkValidity looks at client 1's second (slow) grant: the acquire must
// have taken at least one delayed round trip, and the validity the client
// recorded must not exceed what the TTL leaves after the acquire.
func checkValidity(a *analyze.Analysis, c *Case, p Params) (failures, notes []string) {
	var grants []*analyze.Operation
	for i := range a.Operations {
		o := &a.Operations[i]
		if o.Process == "c1" && o.Type == analyze.OpAcquire && o.Outcome == analyze.OutcomeOK {
			grants = append(grants, o)
		}
	}
	if len(grants) < 2 {
		return []string{fmt.Sprintf("client 1 was granted the lock %d time(s), not twice: the slow acquire did not complete", len(grants))}, nil
	}
	g := grants[1]
	vu, err := strconv.ParseInt(g.Complete.Attrs[analyze.AttrValidUntil], 10, 64)
	ttl, err2 := time.ParseDuration(g.Complete.Attrs[traffic.AttrTTL])
	if err != nil || err2 != nil {
		return []string{"client 1's slow grant lacks valid_until or ttl"}, nil
	}
	took := g.End().Sub(g.Start())
	left := history.Time(vu).Sub(g.End())
	const slack = 20 * time.Millisecond // two clock readings apart in the worker
	if took < 2*validityDelay*9/10 {
		failures = append(failures, fmt.Sprintf("the slow acquire took only %v: the delay of %v each way was not in its path", took.Round(time.Millisecond), validityDelay))
	}
	if left > ttl-took+slack {
		failures = append(failures, fmt.Sprintf("after an acquire of %v the client believed %v of the %v TTL were left: more than TTL − elapsed", took.Round(time.Millisecond), left.Round(time.Millisecond), ttl))
	}
	if left <= 0 {
		failures = append(failures, fmt.Sprintf("the client took a grant with no validity left (%v)", left.Round(time.Millisecond)))
	}
	notes = append(notes, fmt.Sprintf("note: the slow acquire took %v; the holder knew %v of the %v lease were left (valid_until at grant time), not %v",
		took.Round(time.Millisecond), left.Round(time.Millisecond), ttl, ttl))
	return failures, notes
}
