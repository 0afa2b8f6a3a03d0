package scenario

import (
	"context"
	"fmt"
	"time"

	"github.com/fencerlock/fencer/internal/check/analyze"
	"github.com/fencerlock/fencer/internal/check/harness"
	"github.com/fencerlock/fencer/internal/check/traffic"
	"github.com/fencerlock/fencer/internal/faults/netproxy"
	"github.com/fencerlock/fencer/internal/history"
)

// redlockNoToken is the Redlock case of the fencing scenarios.
func redlockNoToken(why string) Case {
	return Case{Backend: "redlock", Setup: harness.Setup{Kind: harness.KindRedlock}, Expected: analyze.ExpectViolation,
		Predicts: []analyze.Violation{analyze.ViolationLostUpdate}, Why: why}
}

const redlockInstead = " Instead: take the lock from a backend with tokens (the fencer server, or PostgreSQL) and have the storage check them (package fence)."

// DESIGN.md 5, Kleppmann's diagram: tokens 33 and 34.
func pause3334() *Scenario {
	return &Scenario{
		Name:   "pause-33-34",
		Title:  "client 1 gets token 33 and is paused (SIGSTOP) past its lease between its read and its write; client 2 gets 34 and writes; client 1 wakes and writes with 33",
		Source: "DESIGN.md 5; Kleppmann (seed 002), \"Making the lock safe with fencing\"",
		Cases: []Case{
			with(fencerSafe, "the store refuses token 33 once it has seen 34, and the fencer server's tokens come from Raft, so they only go up"),
			with(pgSafe, "tokens from a sequence in one durable database only go up, so the store refuses the paused client's old token"),
			with(redisSafe, "while the Redis instance keeps its data its INCR tokens go up, so the store refuses the old one (see redis-failover for when it does not)"),
			redlockNoToken("Redlock issues no token, so the store cannot tell the paused client's write from a current one: it lands and an increment is lost." + redlockInstead),
		},
		Run: func(ctx context.Context, env *harness.Env, p Params) error {
			return overtake{TTL: 2 * time.Second}.run(ctx, env)
		},
	}
}

// DESIGN.md 6: the write held in the network, the 90-second GitHub delay.
func delayedWrite() *Scenario {
	return &Scenario{
		Name:   "delayed-write",
		Title:  "client 1's write is held in the network (a proxy on its link to the store) and client 1 dies; its lease expires; client 2 takes the lock and writes; then the held write arrives",
		Source: "DESIGN.md 6; Kleppmann (seed 002): packets delayed for 90 seconds at GitHub",
		Cases: []Case{
			with(fencerSafe, "the held write carries the old token and arrives after the store has seen client 2's higher one: it is refused"),
			with(pgSafe, "the held write carries the old token from the sequence: refused"),
			with(redisSafe, "the held write carries the older INCR token: refused"),
			redlockNoToken("without a token the store takes the write that arrives late, over client 2's newer value: acknowledged increments are lost." + redlockInstead),
		},
		Run: func(ctx context.Context, env *harness.Env, p Params) error {
			ttl := 2 * time.Second
			if err := env.StartWorker(ctx, harness.WorkerSpec{Name: "c1", Iterations: 1, TTL: ttl,
				Failpoints: stopAt(traffic.PointBeforeWrite)}); err != nil {
				return err
			}
			if err := waitStopped(ctx, env, "c1", 30*time.Second); err != nil {
				return err
			}
			// Hold c1's bytes to the store from now on; then let it write.
			if err := env.SetLink("c1", "store", netproxy.Hold(netproxy.Up)); err != nil {
				return err
			}
			if err := env.Resume("c1"); err != nil {
				return err
			}
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := env.WaitKind(wctx, "c1", history.WriteInvoke, 1)
			cancel()
			if err != nil {
				return err
			}
			wctx, cancel = context.WithTimeout(ctx, 10*time.Second)
			err = env.WaitHeld(wctx, "c1", "store") // the request is in the network
			cancel()
			if err != nil {
				return err
			}
			// c1 dies with its write in the network; its lease runs out.
			if err := env.Kill("c1"); err != nil {
				return err
			}
			if err := env.StartWorker(ctx, harness.WorkerSpec{Name: "c2", Iterations: 2, TTL: ttl}); err != nil {
				return err
			}
			wctx, cancel = context.WithTimeout(ctx, 3*ttl+30*time.Second)
			_, err = env.WaitKind(wctx, "c2", history.WriteOK, 2)
			cancel()
			if err != nil {
				return fmt.Errorf("c2 did not write twice after c1 died: %w", err)
			}
			// The network delivers the held write, long after the lease.
			if err := env.SetLink("c1", "store", netproxy.Fault{}); err != nil {
				return err
			}
			if err := harness.Sleep(ctx, 300*time.Millisecond); err != nil {
				return err
			}
			return waitWorkers(ctx, env, 30*time.Second, "c2")
		},
		Check: func(a *analyze.Analysis, c *Case, p Params) (failures, notes []string) {
			// The demonstration needs the held write to have reached the
			// store's decision.
			for _, w := range a.Store.Writes {
				if w.Process == "c1" {
					switch w.Class {
					case analyze.WriteRejected, analyze.WriteStaleAccepted, analyze.WriteAccepted:
						notes = append(notes, fmt.Sprintf("note: client 1's held write (token %d) reached the store after client 2's writes: %s", w.Token, w.Class))
						return nil, notes
					}
				}
			}
			if c.Expected == analyze.ExpectSafe {
				return []string{"client 1's held write never reached the store's decision, so fencing was not exercised"}, nil
			}
			return nil, nil
		},
	}
}

// Issue 4: many concurrent read-modify-write increments with random
// pauses; without fencing, lost updates appear.
func unfencedIncrements() *Scenario {
	return &Scenario{
		Name:   "unfenced-increments",
		Title:  "three clients increment one counter under the lock; two are stopped once each between read and write, the third at seeded random moments, past their leases; the same run with and without fencing at the store",
		Source: "issue 4: \"without fencing, lost updates appear\"; Kleppmann (seed 002), \"Protecting a resource with a lock\"",
		Cases: []Case{
			with(fencerSafe, "every stale write is refused by its token, so no increment is lost"),
			with(pgSafe, "every stale write is refused by its token, so no increment is lost"),
			{Backend: "fencer-unfenced", Setup: harness.Setup{Kind: harness.KindFencer, Unfenced: true},
				Expected: analyze.ExpectViolation, Predicts: []analyze.Violation{analyze.ViolationLostUpdate},
				Why: "the control run: the same lock service, but the store takes every write, so a client that wakes up after its lease writes over its successor's increment"},
		},
		Run: func(ctx context.Context, env *harness.Env, p Params) error {
			ttl := time.Second
			d := or(p.Duration, 6*time.Second)
			names := []string{"c1", "c2", "c3"}
			for i, n := range names {
				spec := harness.WorkerSpec{Name: n, TTL: ttl, Hold: 10 * time.Millisecond, AcquireTimeout: 10 * time.Second, StoreTimeout: 2 * time.Second}
				if i < 2 {
					// Two of them are sure to be paused between the read
					// and the write once; the nemesis adds pauses anywhere.
					spec.Failpoints = stopAt(traffic.PointBeforeWrite)
				}
				if err := env.StartWorker(ctx, spec); err != nil {
					return err
				}
			}
			rctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			done := make(chan struct{}, 2)
			for _, n := range names[:2] {
				go func() {
					defer func() { done <- struct{}{} }()
					autoResume(rctx, env, n, ttl+ttl/2)
				}()
			}
			defer func() { <-done; <-done }()
			for rctx.Err() == nil {
				if harness.Sleep(rctx, time.Duration(300+p.Rand.IntN(700))*time.Millisecond) != nil {
					break
				}
				// c3 at random points; c1 and c2 stop at their failpoints.
				n := "c3"
				if err := env.Pause(n); err != nil {
					return err
				}
				_ = harness.Sleep(rctx, ttl/2+time.Duration(p.Rand.Int64N(int64(ttl))))
				if err := env.Resume(n); err != nil {
					return err
				}
			}
			return nil
		},
	}
}
