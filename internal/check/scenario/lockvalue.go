package scenario

import (
	"context"
	"time"

	"github.com/fencerlock/fencer/internal/check/analyze"
	"github.com/fencerlock/fencer/internal/check/harness"
	"github.com/fencerlock/fencer/internal/check/traffic"
	"github.com/fencerlock/fencer/internal/history"
)

// DESIGN.md 8: a colliding lock value lets a client release another's
// lock.
func lockValue() *Scenario {
	return &Scenario{
		Name:   "lock-value",
		Title:  "client 1's lock expires while it is stopped; client 2 takes it; client 1 wakes, writes and releases, and with a lock value both clients share its release deletes client 2's lock; client 3 takes it while client 2 still holds it",
		Source: "DESIGN.md 8; \"Explain Redlock in Depth\" (seed 003): \"If IDs are duplicated, both locking and unlocking may result in false positives\"",
		Cases: []Case{
			{Backend: "naive-redis", Setup: harness.Setup{Kind: harness.KindRedis, Naive: "fixed-lock-value"},
				Expected: analyze.ExpectViolation, Predicts: []analyze.Violation{analyze.ViolationBelievedOverlap, analyze.ViolationLostUpdate},
				Why: "a fixed value (a host name, a coarse timestamp) is the same for every client, so the compare-and-delete release of a client whose lease expired deletes its successor's lock, and a third client gets in"},
			{Backend: "redis", Setup: harness.Setup{Kind: harness.KindRedis}, Expected: analyze.ExpectSafe,
				MustNot: []analyze.Violation{analyze.ViolationBelievedOverlap},
				Why:     "every grant has its own 128-bit random value (crypto/rand), so client 1's late release matches nothing and client 2 keeps its lock"},
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
			if err := env.StartWorker(ctx, harness.WorkerSpec{Name: "c2", Iterations: 1, TTL: 4 * ttl,
				Failpoints: stopAt(traffic.PointBeforeWrite)}); err != nil {
				return err
			}
			if err := waitStopped(ctx, env, "c2", 3*ttl+30*time.Second); err != nil {
				return err
			}
			if err := env.StartWorker(ctx, harness.WorkerSpec{Name: "c3", Iterations: 1, TTL: ttl}); err != nil {
				return err
			}
			if err := env.Resume("c1"); err != nil {
				return err
			}
			if err := waitWorkers(ctx, env, 30*time.Second, "c1"); err != nil {
				return err
			}
			// With a shared value client 3 gets in now; with a random one
			// it waits for client 2.
			if _, err := env.WaitKindFor(ctx, "c3", history.AcquireOK, 1, 1500*time.Millisecond); err != nil {
				return err
			}
			if err := env.Resume("c2"); err != nil {
				return err
			}
			return waitWorkers(ctx, env, 30*time.Second+3*ttl)
		},
	}
}
