package scenario

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/fencerlock/fencer/internal/check/analyze"
	"github.com/fencerlock/fencer/internal/check/harness"
)

// serverTTL is the leases' TTL in the lock server's scenarios.
const serverTTL = 2 * time.Second

// serverScenario is a lock server scenario: three looping clients, a
// warm-up, the fault, the workload after it.
func serverScenario(name, title, source string, workload analyze.Workload, setup harness.Setup, why string,
	fault func(ctx context.Context, env *harness.Env, p Params) error) *Scenario {
	setup.Kind = harness.KindFencer
	return &Scenario{
		Name:     name,
		Title:    title,
		Source:   source,
		Workload: workload,
		Cases:    []Case{{Backend: "fencer", Setup: setup, Expected: analyze.ExpectSafe, Why: why}},
		Run: func(ctx context.Context, env *harness.Env, p Params) error {
			if err := load(ctx, env, 3, serverTTL); err != nil {
				return err
			}
			if err := harness.Sleep(ctx, time.Second); err != nil {
				return err
			}
			if err := fault(ctx, env, p); err != nil {
				return err
			}
			return harness.Sleep(ctx, or(p.Duration, 2*time.Second))
		},
	}
}

const serverSource = "DESIGN.md, \"the lock server\"; issue 5"

func leaderCrash() *Scenario {
	return serverScenario("leader-crash",
		"three clients increment a counter under the lock; the leader is killed (kill -9) and restarted 2 s later",
		serverSource, analyze.WorkloadCounter, harness.Setup{},
		"a grant is committed on a majority before it is acknowledged; the new leader restarts every lease at its full TTL and continues the token counter",
		func(ctx context.Context, env *harness.Env, p Params) error {
			leader, err := env.Leader(ctx)
			if err != nil {
				return err
			}
			if err := env.Kill(leader); err != nil {
				return err
			}
			if err := harness.Sleep(ctx, 2*time.Second); err != nil {
				return err
			}
			return env.Restart(ctx, leader)
		})
}

func leaderPartition() *Scenario {
	return serverScenario("leader-partition",
		"three clients add elements to a set under the lock; the leader is cut off from both followers (its Raft links) for 3 s, while clients can still reach it",
		serverSource, analyze.WorkloadSet, harness.Setup{},
		"the isolated leader can commit nothing and steps down; it may not extend a lease without a quorum, so the majority's new leader never grants a lock the old one still promises",
		func(ctx context.Context, env *harness.Env, p Params) error {
			leader, err := env.Leader(ctx)
			if err != nil {
				return err
			}
			if err := env.Isolate(leader); err != nil {
				return err
			}
			if err := harness.Sleep(ctx, 3*time.Second); err != nil {
				return err
			}
			return env.Heal()
		})
}

func leaderPause() *Scenario {
	return serverScenario("leader-pause",
		"three clients increment a counter under the lock; the leader is paused (SIGSTOP) for 3 s, longer than the election timeout and the leases' TTL, then resumed",
		serverSource, analyze.WorkloadCounter, harness.Setup{},
		"a paused leader is a partitioned one that wakes up later: the majority elects another, and the old one, on waking, steps down before it can act on stale state; tokens keep increasing",
		func(ctx context.Context, env *harness.Env, p Params) error {
			leader, err := env.Leader(ctx)
			if err != nil {
				return err
			}
			if err := env.Pause(leader); err != nil {
				return err
			}
			if err := harness.Sleep(ctx, 3*time.Second); err != nil {
				return err
			}
			return env.Resume(leader)
		})
}

func killAll() *Scenario {
	return serverScenario("kill-all",
		"three clients increment a counter under the lock; every node is killed (kill -9) at once and restarted from its data directory",
		serverSource, analyze.WorkloadCounter, harness.Setup{},
		"the Raft log is fsynced before a grant is acknowledged and the token counter is part of the replicated state, so after a full restart no grant is forgotten and no token is issued twice",
		func(ctx context.Context, env *harness.Env, p Params) error {
			nodes := env.Nodes()
			for _, n := range nodes {
				if err := env.Kill(n); err != nil {
					return err
				}
			}
			if err := harness.Sleep(ctx, 500*time.Millisecond); err != nil {
				return err
			}
			var wg sync.WaitGroup
			errs := make([]error, len(nodes))
			for i, n := range nodes {
				wg.Go(func() {
					rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
					defer cancel()
					errs[i] = env.Restart(rctx, n)
				})
			}
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				return err
			}
			_, err := env.Leader(ctx)
			return err
		})
}

func membership() *Scenario {
	return serverScenario("membership",
		"three clients add elements to a set under the lock; a fourth node joins, then the leader is removed from the cluster",
		serverSource, analyze.WorkloadSet, harness.Setup{Spares: 1},
		"membership changes go through the Raft log one at a time, and the removed leader hands over like a failed one: grants stay unique and tokens keep increasing",
		func(ctx context.Context, env *harness.Env, p Params) error {
			added, err := env.AddNode(ctx)
			if err != nil {
				return err
			}
			if err := harness.Sleep(ctx, time.Second); err != nil {
				return err
			}
			leader, err := env.Leader(ctx)
			if err != nil {
				return err
			}
			if leader == added {
				return fmt.Errorf("the node just added, %s, leads; the scenario wants to remove an original leader", added)
			}
			return env.RemoveNode(ctx, leader)
		})
}

func followerClockJump() *Scenario {
	return serverScenario("follower-clock-jump",
		"three clients increment a counter under the lock; one follower's clock jumps 30 s ahead and the other's runs 3x fast, then the leader is killed, so a follower with a wrong clock takes over; the old leader comes back",
		serverSource, analyze.WorkloadCounter, harness.Setup{},
		"followers never expire anything, and a new leader restarts every lease at a full TTL on its own clock, so a clock that jumped before the failover shortens or lengthens no lease it inherits; a fast clock only expires leases early, and the token still protects the store",
		func(ctx context.Context, env *harness.Env, p Params) error {
			leader, err := env.Leader(ctx)
			if err != nil {
				return err
			}
			fs := env.Followers(leader)
			if len(fs) < 2 {
				return fmt.Errorf("want two followers of %s, have %v", leader, fs)
			}
			if err := env.JumpClock(fs[0], 30*time.Second); err != nil {
				return err
			}
			if err := env.SkewClock(fs[1], 3); err != nil {
				return err
			}
			if err := harness.Sleep(ctx, 500*time.Millisecond); err != nil {
				return err
			}
			if err := env.Kill(leader); err != nil {
				return err
			}
			next, err := env.Leader(ctx)
			if err != nil {
				return err
			}
			env.Logf("the new leader is %s", next)
			if err := harness.Sleep(ctx, 2*time.Second); err != nil {
				return err
			}
			return env.Restart(ctx, leader)
		})
}
