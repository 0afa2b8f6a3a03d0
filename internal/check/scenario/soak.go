package scenario

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/fencerlock/fencer/internal/check/analyze"
	"github.com/fencerlock/fencer/internal/check/harness"
	"github.com/fencerlock/fencer/internal/faults/netproxy"
)

// The soak's fault kinds.
const (
	SoakKillNode    = "kill-node"    // kill -9 a node, restart it after the duration
	SoakPauseNode   = "pause-node"   // SIGSTOP a node for the duration
	SoakIsolateNode = "isolate-node" // cut a node's Raft links for the duration
	SoakClockJump   = "clock-jump"   // jump a node's clock by Param seconds for the duration
	SoakClockSkew   = "clock-skew"   // run a node's clock at Param times the rate for the duration
	SoakPauseClient = "pause-client" // SIGSTOP a client for the duration (past its lease)
	SoakKillClient  = "kill-client"  // kill -9 a client, restart it after the duration
	SoakDelayStore  = "delay-store"  // delay a client's link to the store by Param ms
	SoakResetClient = "reset-client" // reset a client's connections to a node for the duration
	SoakDelayNode   = "delay-node"   // delay a client's link to a node by Param ms
)

// soakMinGap is the quiet time between two faults, at least.
const soakMinGap = time.Second

func soakKinds() []string {
	return []string{SoakKillNode, SoakPauseNode, SoakIsolateNode, SoakClockJump, SoakClockSkew,
		SoakPauseClient, SoakKillClient, SoakDelayStore, SoakResetClient, SoakDelayNode}
}

// Fault is one step of the soak's schedule.
type Fault struct {
	// At is when it starts, from the start of the schedule.
	At time.Duration
	// Kind is one of the Soak* kinds.
	Kind string
	// Target is the node or client it hits; Link, for link faults, the
	// node at the other end ("store" for the store).
	Target, Link string
	// Duration is how long it lasts before it is healed.
	Duration time.Duration
	// Param is the kind's parameter (seconds of a jump, a rate, ms of
	// delay).
	Param float64
}

func (f Fault) String() string {
	s := fmt.Sprintf("%v %s %s", f.At.Round(time.Millisecond), f.Kind, f.Target)
	if f.Link != "" {
		s += "→" + f.Link
	}
	if f.Param != 0 {
		s += fmt.Sprintf(" (%g)", f.Param)
	}
	return s + fmt.Sprintf(" for %v", f.Duration.Round(time.Millisecond))
}

// Schedule returns the soak's fault schedule: over d, a fault about every
// `every` (uniformly between 0.7 and 1.3 times it), each of a kind, target
// and duration drawn from a PCG generator seeded with seed. Faults never
// overlap: each is healed, and a quiet second passes, before the next. The
// same arguments always give the same schedule; that is what --seed
// reproduces.
func Schedule(seed uint64, d, every time.Duration, nodes, clients []string) []Fault {
	if every <= 0 || d <= 0 || len(nodes) == 0 || len(clients) == 0 {
		return nil
	}
	r := rand.New(rand.NewPCG(seed, 0x5eed5eed))
	kinds := soakKinds()
	var out []Fault
	at := time.Duration(0)
	for {
		gap := time.Duration(float64(every) * (0.7 + 0.6*r.Float64()))
		at += gap
		f := Fault{At: at, Kind: kinds[r.IntN(len(kinds))]}
		// A fault lasts between a quarter and half of the interval, and
		// at most 6 s: long enough to outlast leases and elections.
		f.Duration = min(time.Duration(float64(every)*(0.25+0.25*r.Float64())), 6*time.Second)
		f.Duration = max(f.Duration, 500*time.Millisecond)
		node := nodes[r.IntN(len(nodes))]
		client := clients[r.IntN(len(clients))]
		switch f.Kind {
		case SoakKillNode, SoakPauseNode, SoakIsolateNode:
			f.Target = node
		case SoakClockJump:
			f.Target, f.Param = node, float64(10+r.IntN(50))
			if r.IntN(3) == 0 {
				f.Param = -f.Param
			}
		case SoakClockSkew:
			f.Target, f.Param = node, []float64{0.5, 2, 3, 5}[r.IntN(4)]
		case SoakPauseClient, SoakKillClient:
			f.Target = client
		case SoakDelayStore:
			f.Target, f.Link, f.Param = client, "store", float64(50+r.IntN(450))
		case SoakResetClient, SoakDelayNode:
			f.Target, f.Link = client, node
			if f.Kind == SoakDelayNode {
				f.Param = float64(50 + r.IntN(450))
			}
		}
		if f.At+f.Duration+soakMinGap > d {
			return out
		}
		out = append(out, f)
		at = f.At + f.Duration + soakMinGap - gap/2
	}
}

func soak() *Scenario {
	return &Scenario{
		Name:   "soak",
		Title:  "three clients increment a counter under the lock while a seeded nemesis injects a random fault about every 10 s (every 3 s in the short form): node kills, pauses, partitions, clock jumps and skews, client pauses and kills, link delays and resets",
		Source: "issue 5: \"a mixed-fault soak (--duration, a random fault about every 10 s)\"",
		Cases: []Case{{Backend: "fencer", Setup: harness.Setup{Kind: harness.KindFencer}, Expected: analyze.ExpectSafe,
			Why: "each fault alone is one the other scenarios show harmless to safety; in any sequence, grants stay unique, tokens keep increasing and the store refuses every stale write"}},
		Run: func(ctx context.Context, env *harness.Env, p Params) error {
			d, every := 12*time.Second, 3*time.Second
			if p.Duration > 0 {
				d, every = p.Duration, 10*time.Second
			}
			clients := []string{"c1", "c2", "c3"}
			if err := load(ctx, env, len(clients), serverTTL); err != nil {
				return err
			}
			sched := Schedule(p.Seed, d, every, env.Nodes(), clients)
			env.Logf("soak schedule (seed %d): %d faults over %v", p.Seed, len(sched), d)
			start := time.Now()
			for _, f := range sched {
				if err := harness.Sleep(ctx, time.Until(start.Add(f.At))); err != nil {
					return err
				}
				env.Logf("soak: %s", f)
				if err := injectSoak(ctx, env, f); err != nil {
					return fmt.Errorf("soak fault %s: %w", f, err)
				}
			}
			return harness.Sleep(ctx, time.Until(start.Add(d)))
		},
	}
}

// injectSoak injects f, waits its duration and heals it.
func injectSoak(ctx context.Context, env *harness.Env, f Fault) error {
	hold := func() error { return harness.Sleep(ctx, f.Duration) }
	switch f.Kind {
	case SoakKillNode:
		if !slices.Contains(env.Nodes(), f.Target) {
			return nil
		}
		if err := env.Kill(f.Target); err != nil {
			return err
		}
		if err := hold(); err != nil {
			return err
		}
		return env.Restart(ctx, f.Target)
	case SoakPauseNode, SoakPauseClient:
		if err := env.Pause(f.Target); err != nil {
			return err
		}
		if err := hold(); err != nil {
			return err
		}
		return env.Resume(f.Target)
	case SoakIsolateNode:
		if err := env.Isolate(f.Target); err != nil {
			return err
		}
		if err := hold(); err != nil {
			return err
		}
		return env.Heal()
	case SoakClockJump:
		if err := env.JumpClock(f.Target, time.Duration(f.Param*float64(time.Second))); err != nil {
			return err
		}
		if err := hold(); err != nil {
			return err
		}
		return env.JumpClock(f.Target, 0)
	case SoakClockSkew:
		if err := env.SkewClock(f.Target, f.Param); err != nil {
			return err
		}
		if err := hold(); err != nil {
			return err
		}
		return env.SkewClock(f.Target, 1)
	case SoakKillClient:
		if err := env.Kill(f.Target); err != nil {
			return err
		}
		if err := hold(); err != nil {
			return err
		}
		return env.Restart(ctx, f.Target)
	case SoakDelayStore, SoakDelayNode, SoakResetClient:
		fault := netproxy.Delay(netproxy.Both, time.Duration(f.Param*float64(time.Millisecond)), 0)
		if f.Kind == SoakResetClient {
			fault = netproxy.Reset()
		}
		if err := env.SetLink(f.Target, f.Link, fault); err != nil {
			return err
		}
		if err := hold(); err != nil {
			return err
		}
		return env.SetLink(f.Target, f.Link, netproxy.Fault{})
	}
	return fmt.Errorf("unknown soak fault kind %q", f.Kind)
}
