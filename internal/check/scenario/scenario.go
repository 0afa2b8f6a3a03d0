package scenario

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/fencerlock/fencer/internal/check/analyze"
	"github.com/fencerlock/fencer/internal/check/harness"
)

// Scenario is one failure scenario and its expected outcome per backend.
type Scenario struct {
	// Name is how `fencer check --scenario` names it, e.g. "pause-33-34".
	Name string
	// Title says in one line what happens.
	Title string
	// Source says where it comes from: DESIGN.md's number, a seed article.
	Source string
	// Workload is what the workers do with the store; default counter.
	Workload analyze.Workload
	// Cases are the backends it runs against, with what each must show.
	Cases []Case
	// Run drives one run: it starts the workers and injects the faults
	// through env, and returns when the workload is done (or ctx ends);
	// the harness then stops what still runs and collects.
	Run func(ctx context.Context, env *harness.Env, p Params) error
	// Check, if set, looks at the analysis for what the generic checks do
	// not: each failure makes the run fail, each note is shown.
	Check func(a *analyze.Analysis, c *Case, p Params) (failures, notes []string)
}

// Case is one backend a scenario runs against.
type Case struct {
	// Backend labels the run in the report, e.g. "redis" or "redlock-aof".
	Backend string
	// Setup is the lock service the harness starts.
	Setup harness.Setup
	// Expected is what must come out.
	Expected analyze.Expectation
	// Predicts are the violations that count as a reproduction when
	// Expected is violation (empty: any).
	Predicts []analyze.Violation
	// MustNot are violations that fail the run even when Expected is
	// safe, where the safe rules would let them pass.
	MustNot []analyze.Violation
	// Why says in one sentence why that is expected.
	Why string
}

// Kind returns the case's backend kind, what --backend filters on.
func (c *Case) Kind() harness.Kind { return c.Setup.Kind }

// Params are the knobs of one run.
type Params struct {
	// Duration is --duration: zero runs the short form.
	Duration time.Duration
	// Seed is the run's seed (--seed combined with the run's index).
	Seed uint64
	// Rand is seeded with Seed.
	Rand *rand.Rand
}

// NewParams returns the Params of a run.
func NewParams(d time.Duration, seed uint64) Params {
	return Params{Duration: d, Seed: seed, Rand: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// or returns d, or def when d is zero.
func or(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// Expectation describes what the case expects, for --list and the report:
// "safe" or "violation (believed-overlap or lost-update)".
func (c *Case) Expectation() string {
	s := string(c.Expected)
	if c.Expected == analyze.ExpectViolation && len(c.Predicts) > 0 {
		var vs []string
		for _, v := range c.Predicts {
			vs = append(vs, string(v))
		}
		s += " (" + strings.Join(vs, " or ") + ")"
	}
	if len(c.MustNot) > 0 {
		var vs []string
		for _, v := range c.MustNot {
			vs = append(vs, string(v))
		}
		s += ", and no " + strings.Join(vs, " or ")
	}
	return s
}

// All returns every scenario, in the order `fencer check` runs them: the
// fencing ones, the Redis and Redlock ones, validity and lock values, then
// the lock server's.
func All() []*Scenario {
	return []*Scenario{
		pause3334(),
		delayedWrite(),
		unfencedIncrements(),
		redisFailover(),
		clockJump(),
		redlockPauseInAcquire(),
		redlockPauseAfterAcquire(),
		redlockRestart(),
		validity(),
		lockValue(),
		leaderCrash(),
		leaderPartition(),
		leaderPause(),
		killAll(),
		membership(),
		followerClockJump(),
		soak(),
	}
}

// Lookup returns the scenario called name.
func Lookup(name string) (*Scenario, error) {
	for _, s := range All() {
		if s.Name == name {
			return s, nil
		}
	}
	return nil, fmt.Errorf("no scenario %q; the scenarios are %s (or all)", name, strings.Join(Names(), ", "))
}

// Names returns every scenario's name, in order.
func Names() []string {
	var out []string
	for _, s := range All() {
		out = append(out, s.Name)
	}
	return out
}
