package scenario

import (
	"context"
	"fmt"
	"time"

	"github.com/fencerlock/fencer/internal/check/analyze"
	"github.com/fencerlock/fencer/internal/check/harness"
	"github.com/fencerlock/fencer/internal/check/traffic"
	"github.com/fencerlock/fencer/internal/history"
)

// Common expectations.
var (
	fencerSafe = Case{Backend: "fencer", Setup: harness.Setup{Kind: harness.KindFencer}, Expected: analyze.ExpectSafe}
	pgSafe     = Case{Backend: "postgres", Setup: harness.Setup{Kind: harness.KindPostgres}, Expected: analyze.ExpectSafe}
	redisSafe  = Case{Backend: "redis", Setup: harness.Setup{Kind: harness.KindRedis}, Expected: analyze.ExpectSafe}
)

// with returns c with its Why set.
func with(c Case, why string) Case {
	c.Why = why
	return c
}

// stopAt arms a failpoint that stops the worker once.
func stopAt(point string) string { return point + "=1*stop" }

// overtake is the skeleton of Kleppmann's diagrams: client c1 takes the
// lock and is stopped at a failpoint while it believes it holds it;
// something goes wrong (fault); client c2 takes the lock and writes; c1
// wakes up and carries on with what it was doing.
type overtake struct {
	// TTL of both clients' leases.
	TTL time.Duration
	// Point is where c1 stops; default before-write (after its read and
	// its last look at the lease).
	Point string
	// NoLeaseCheck: the clients do not look at the lease before writing.
	NoLeaseCheck bool
	// Iterations of c1 and c2; default 1 each, so that the demonstration
	// is exactly the diagram's.
	C1Iterations, C2Iterations int
	// Before runs before c1 starts (link faults that shape its acquire).
	Before func(ctx context.Context, env *harness.Env) error
	// Fault runs once c1 is stopped, before c2 starts.
	Fault func(ctx context.Context, env *harness.Env) error
	// WaitC2 bounds the wait for c2's first write before c1 is resumed;
	// zero waits for it (up to a generous bound): use a bound where c2
	// may not get the lock while c1 holds it.
	WaitC2 time.Duration
	// C2 is c2's spec beyond Name, TTL and Iterations (e.g. failpoints).
	C2 harness.WorkerSpec
}

func (o overtake) run(ctx context.Context, env *harness.Env) error {
	ttl := or(o.TTL, 2*time.Second)
	point := o.Point
	if point == "" {
		point = traffic.PointBeforeWrite
	}
	it1, it2 := max(o.C1Iterations, 1), max(o.C2Iterations, 1)
	if o.Before != nil {
		if err := o.Before(ctx, env); err != nil {
			return err
		}
	}
	if err := env.StartWorker(ctx, harness.WorkerSpec{Name: "c1", Iterations: it1, TTL: ttl,
		Failpoints: stopAt(point), NoLeaseCheck: o.NoLeaseCheck}); err != nil {
		return err
	}
	if err := waitStopped(ctx, env, "c1", 30*time.Second); err != nil {
		return err
	}
	env.Logf("c1 holds the lock and is stopped at %s", point)
	if o.Fault != nil {
		if err := o.Fault(ctx, env); err != nil {
			return err
		}
	}
	c2 := o.C2
	c2.Name, c2.TTL, c2.Iterations, c2.NoLeaseCheck = "c2", ttl, it2, o.NoLeaseCheck
	if err := env.StartWorker(ctx, c2); err != nil {
		return err
	}
	if o.WaitC2 > 0 {
		ok, err := env.WaitKindFor(ctx, "c2", history.WriteOK, 1, o.WaitC2)
		if err != nil {
			return err
		}
		env.Logf("c2 wrote while c1 was stopped: %v", ok)
	} else {
		wctx, cancel := context.WithTimeout(ctx, 3*ttl+30*time.Second)
		_, err := env.WaitKind(wctx, "c2", history.WriteOK, 1)
		cancel()
		if err != nil {
			return fmt.Errorf("c2 never wrote while c1 was stopped: %w", err)
		}
	}
	if err := env.Resume("c1"); err != nil {
		return err
	}
	return waitWorkers(ctx, env, 30*time.Second+3*ttl)
}

// waitStopped waits up to d for worker name to stop at its failpoint.
func waitStopped(ctx context.Context, env *harness.Env, name string, d time.Duration) error {
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return env.WaitStopped(wctx, name)
}

// waitWorkers waits up to d for the workers to finish their iterations.
func waitWorkers(ctx context.Context, env *harness.Env, d time.Duration, names ...string) error {
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return env.WaitWorkers(wctx, names...)
}

// autoResume resumes worker name every time it stops (at its failpoints),
// after it has been stopped for d, until ctx ends. It runs on the calling
// goroutine; start it with go and stop it by cancelling ctx.
func autoResume(ctx context.Context, env *harness.Env, name string, d time.Duration) {
	for ctx.Err() == nil {
		if err := env.WaitStopped(ctx, name); err != nil {
			return
		}
		if harness.Sleep(ctx, d) != nil {
			return
		}
		_ = env.Resume(name)
		// Give it a moment to leave the stopped state before looking again.
		if harness.Sleep(ctx, 50*time.Millisecond) != nil {
			return
		}
	}
}

// load starts n looping workers c1..cn for the server scenarios.
func load(ctx context.Context, env *harness.Env, n int, ttl time.Duration) error {
	for i := 1; i <= n; i++ {
		if err := env.StartWorker(ctx, harness.WorkerSpec{Name: fmt.Sprintf("c%d", i), TTL: ttl,
			Hold: 5 * time.Millisecond, AcquireTimeout: 10 * time.Second, StoreTimeout: 2 * time.Second}); err != nil {
			return err
		}
	}
	return nil
}
