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

// DESIGN.md 1: asynchronous replication loses a lock on failover.
func redisFailover() *Scenario {
	return &Scenario{
		Name:   "redis-failover",
		Title:  "client 1 takes the lock on the Redis primary, which dies before replicating it; the replica is promoted (REPLICAOF NO ONE) and client 2 takes the same lock; for the fencer server, the leader is killed instead",
		Source: "DESIGN.md 1; seeds 000, 001 and 003: asynchronous replication",
		Cases: []Case{
			{Backend: "redis", Setup: harness.Setup{Kind: harness.KindRedis, Replica: true}, Expected: analyze.ExpectViolation,
				Predicts: []analyze.Violation{analyze.ViolationBelievedOverlap, analyze.ViolationTokenRegression, analyze.ViolationLostUpdate},
				Why:      "the promoted replica never saw the lock nor its token counter: client 2 is granted the lock client 1 still holds, with the same token, and the store, seeing an equal token, takes both writes"},
			with(fencerSafe, "a grant is acknowledged only once a majority has it, so the new leader knows client 1's lease, restarts its TTL, and grants client 2 only after it expired, with a higher token; client 1's late write is refused"),
		},
		Run: func(ctx context.Context, env *harness.Env, p Params) error {
			o := overtake{TTL: 5 * time.Second}
			if env.Kind() == harness.KindRedis {
				o.Before = func(ctx context.Context, env *harness.Env) error { return env.HoldReplication() }
				o.Fault = func(ctx context.Context, env *harness.Env) error { return env.Failover(ctx) }
			} else {
				o.Fault = func(ctx context.Context, env *harness.Env) error {
					leader, err := env.Leader(ctx)
					if err != nil {
						return err
					}
					return env.Kill(leader)
				}
			}
			return o.run(ctx, env)
		},
	}
}

// cutLinks cuts worker's links to the Redlock nodes named.
func cutLinks(env *harness.Env, worker string, nodes ...string) error {
	for _, n := range nodes {
		if err := env.SetLink(worker, n, netproxy.Cut()); err != nil {
			return err
		}
	}
	return nil
}

// DESIGN.md 2: one Redlock node's clock jumps forward.
func clockJump() *Scenario {
	return &Scenario{
		Name:   "clock-jump",
		Title:  "client 1 locks Redlock nodes A, B, C (D and E unreachable to it); C's wall clock jumps 30 s ahead and the key expires; client 2 locks C, D, E (A and B unreachable to it); for the fencer server, the leader's clock jumps instead",
		Source: "DESIGN.md 2; Kleppmann (seed 002), \"Breaking Redlock with bad timings\"",
		Cases: []Case{
			{Backend: "redlock", Setup: harness.Setup{Kind: harness.KindRedlock, Clocks: true}, Expected: analyze.ExpectViolation,
				Predicts: []analyze.Violation{analyze.ViolationBelievedOverlap, analyze.ViolationLostUpdate},
				Why:      "Redis expires keys by the wall clock: after C's jump a second majority forms while client 1's lease is still valid by its own reckoning, and without a token nothing stops client 1's write"},
			{Backend: "fencer", Setup: harness.Setup{Kind: harness.KindFencer}, Expected: analyze.ExpectSafe,
				Why: "the jump makes the leader expire client 1's session early, so client 2 is granted the lock while client 1 still believes it holds it (a believed overlap, shown as a note), but client 2's token is higher and the store refuses client 1's write: safety never depends on the clock"},
		},
		Run: func(ctx context.Context, env *harness.Env, p Params) error {
			o := overtake{TTL: 5 * time.Second}
			if env.Kind() == harness.KindRedlock {
				o.Before = func(ctx context.Context, env *harness.Env) error { return cutLinks(env, "c1", "r4", "r5") }
				o.Fault = func(ctx context.Context, env *harness.Env) error {
					if err := env.JumpClock("r3", 30*time.Second); err != nil {
						return err
					}
					return cutLinks(env, "c2", "r1", "r2")
				}
			} else {
				o.Fault = func(ctx context.Context, env *harness.Env) error {
					leader, err := env.Leader(ctx)
					if err != nil {
						return err
					}
					return env.JumpClock(leader, 30*time.Second)
				}
			}
			return o.run(ctx, env)
		},
	}
}

// DESIGN.md 3, first half: the pause while the replies are in flight.
func redlockPauseInAcquire() *Scenario {
	return &Scenario{
		Name:   "redlock-pause-in-acquire",
		Title:  "client 1 is stopped inside Redlock's acquire, after its five replies arrived and before it looked at the clock; the keys expire; client 2 locks all five; client 1 wakes up",
		Source: "DESIGN.md 3; Kleppmann (seed 002): \"While the responses to client 1 are in flight, client 1 goes into stop-the-world GC\"",
		Cases: []Case{
			{Backend: "redlock", Setup: harness.Setup{Kind: harness.KindRedlock}, Expected: analyze.ExpectSafe,
				MustNot: []analyze.Violation{analyze.ViolationBelievedOverlap},
				Why:     "Redlock's validity check (TTL − elapsed − drift) runs after the replies are read and measures the pause, so client 1 drops its stale majority and waits for client 2: this pause is caught (a pause after the check is not: see redlock-pause-after-acquire)"},
		},
		Run: func(ctx context.Context, env *harness.Env, p Params) error {
			ttl := 2 * time.Second
			if err := env.StartWorker(ctx, harness.WorkerSpec{Name: "c1", Iterations: 1, TTL: ttl,
				Failpoints: stopAt(traffic.PointRedlockAfterReplies)}); err != nil {
				return err
			}
			if err := waitStopped(ctx, env, "c1", 30*time.Second); err != nil {
				return err
			}
			// Client 2 gets the lock once client 1's keys expire, and holds
			// it (stopped after its read) while client 1 wakes up.
			if err := env.StartWorker(ctx, harness.WorkerSpec{Name: "c2", Iterations: 1, TTL: 3 * ttl,
				Failpoints: stopAt(traffic.PointAfterRead)}); err != nil {
				return err
			}
			if err := waitStopped(ctx, env, "c2", 3*ttl+30*time.Second); err != nil {
				return err
			}
			if err := env.Resume("c1"); err != nil {
				return err
			}
			// Client 1 must not get the lock while client 2 holds it.
			if _, err := env.WaitKindFor(ctx, "c1", history.AcquireOK, 1, ttl/2); err != nil {
				return err
			}
			if err := env.Resume("c2"); err != nil {
				return err
			}
			return waitWorkers(ctx, env, 30*time.Second+3*ttl)
		},
		Check: func(a *analyze.Analysis, c *Case, p Params) (failures, notes []string) {
			// Evidence: client 1's first acquire took longer than the TTL
			// and its grant came only after client 2 released.
			var c1 *analyze.Operation
			var c2Release history.Time
			for i := range a.Operations {
				o := &a.Operations[i]
				if o.Process == "c1" && o.Type == analyze.OpAcquire && c1 == nil {
					c1 = o
				}
				if o.Process == "c2" && o.Type == analyze.OpRelease && c2Release == 0 {
					c2Release = o.Start()
				}
			}
			if c1 == nil || c1.Outcome != analyze.OutcomeOK {
				return []string{"client 1's acquire did not complete: the demonstration did not run to its end"}, nil
			}
			took := c1.End().Sub(c1.Start())
			if took < 2*time.Second {
				failures = append(failures, fmt.Sprintf("client 1's acquire took only %v, not longer than the TTL: the pause inside it did not happen", took.Round(time.Millisecond)))
			}
			if c2Release == 0 || c1.End() < c2Release {
				failures = append(failures, "client 1 was granted the lock before client 2 released it")
			}
			notes = append(notes, fmt.Sprintf("note: client 1's acquire took %v including the pause inside it; Redlock discarded the stale majority and granted the lock only after client 2 released it", took.Round(time.Millisecond)))
			return failures, notes
		},
	}
}

// DESIGN.md 3, second half: the pause right after the check.
func redlockPauseAfterAcquire() *Scenario {
	return &Scenario{
		Name:   "redlock-pause-after-acquire",
		Title:  "client 1 is stopped right after Redlock's acquire returned (after its validity check, before it used the lock); client 2 takes the lock and reads; client 1 wakes and, trusting the validity it was given, reads and writes; client 2 writes",
		Source: "DESIGN.md 3; Kleppmann (seed 002): \"Client 1 finishes GC ... Clients 1 and 2 now both believe they hold the lock\"",
		Cases: []Case{
			{Backend: "redlock", Setup: harness.Setup{Kind: harness.KindRedlock}, Expected: analyze.ExpectViolation,
				Predicts: []analyze.Violation{analyze.ViolationLostUpdate},
				Why:      "no check inside the acquire can see a pause that comes after it; without a token, client 1's write and client 2's both land on the value they read, and one increment is lost." + redlockInstead},
			with(fencerSafe, "client 1's read carries token 33 after client 2's read raised the key's floor to 34: refused, so client 1 never writes"),
		},
		Run: func(ctx context.Context, env *harness.Env, p Params) error {
			ttl := 2 * time.Second
			if err := env.StartWorker(ctx, harness.WorkerSpec{Name: "c1", Iterations: 1, TTL: ttl, NoLeaseCheck: true,
				Failpoints: stopAt(traffic.PointAfterAcquire)}); err != nil {
				return err
			}
			if err := waitStopped(ctx, env, "c1", 30*time.Second); err != nil {
				return err
			}
			if err := env.StartWorker(ctx, harness.WorkerSpec{Name: "c2", Iterations: 1, TTL: 3 * ttl, NoLeaseCheck: true,
				Failpoints: stopAt(traffic.PointAfterRead)}); err != nil {
				return err
			}
			if err := waitStopped(ctx, env, "c2", 3*ttl+30*time.Second); err != nil {
				return err
			}
			if err := env.Resume("c1"); err != nil {
				return err
			}
			if err := waitWorkers(ctx, env, 30*time.Second, "c1"); err != nil {
				return err
			}
			if err := env.Resume("c2"); err != nil {
				return err
			}
			return waitWorkers(ctx, env, 30*time.Second)
		},
	}
}

// DESIGN.md 4: a Redlock node restarts without persistence.
func redlockRestart() *Scenario {
	return &Scenario{
		Name:   "redlock-restart",
		Title:  "client 1 locks Redlock nodes A, B, C (D and E unreachable to it); C crashes and restarts at once (kill -9); client 2 locks C, D, E (A and B unreachable to it)",
		Source: "DESIGN.md 4; Kleppmann (seed 002): \"if C crashes before persisting the lock to disk, and immediately restarts\"",
		Cases: []Case{
			{Backend: "redlock", Setup: harness.Setup{Kind: harness.KindRedlock}, Expected: analyze.ExpectViolation,
				Predicts: []analyze.Violation{analyze.ViolationBelievedOverlap, analyze.ViolationLostUpdate},
				Why:      "C comes back without the key, so a second majority forms while client 1's lease is valid; and without a token its write is not stopped"},
			{Backend: "redlock-aof", Setup: harness.Setup{Kind: harness.KindRedlock, AOF: true}, Expected: analyze.ExpectSafe,
				MustNot: []analyze.Violation{analyze.ViolationBelievedOverlap},
				Why:     "with appendfsync always C comes back with the key and its expiry, so client 2 finds no majority until client 1 releases: the fix the Redlock description asks for (or delaying restarts by the TTL); it still relies on clocks and pauses behaving"},
		},
		Run: func(ctx context.Context, env *harness.Env, p Params) error {
			return overtake{
				TTL:    5 * time.Second,
				Before: func(ctx context.Context, env *harness.Env) error { return cutLinks(env, "c1", "r4", "r5") },
				Fault: func(ctx context.Context, env *harness.Env) error {
					if err := env.CrashRestart(ctx, "r3"); err != nil {
						return err
					}
					return cutLinks(env, "c2", "r1", "r2")
				},
				// With AOF client 2 cannot get the lock while client 1
				// holds it: resume client 1 within its lease.
				WaitC2: 2 * time.Second,
			}.run(ctx, env)
		},
	}
}
