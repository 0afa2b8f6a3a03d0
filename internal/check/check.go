package check

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fencerlock/fencer/internal/check/analyze"
	"github.com/fencerlock/fencer/internal/check/harness"
	"github.com/fencerlock/fencer/internal/check/scenario"
)

// MaxDuration bounds Options.Duration.
const MaxDuration = 24 * time.Hour

// Options configure Run.
type Options struct {
	// Binary is the fencer binary that runs the servers, the store and the
	// workers. Required.
	Binary string
	// Scenarios are the scenario names to run; empty, or "all", runs
	// every one.
	Scenarios []string
	// Backends filter the runs by backend: a kind (fencer, postgres,
	// redis, redlock) or a case label (redlock-aof, naive-redis,
	// fencer-unfenced). Empty runs every backend of each scenario.
	Backends []string
	// Duration is how long the scenarios that loop run (the soak, the
	// lock server's, unfenced-increments); zero is the short form.
	Duration time.Duration
	// Seed seeds every run (fault schedules, random pauses, jitter).
	Seed uint64
	// Dir gets one directory per run (histories, logs; the servers' data
	// is removed after each run). Required.
	Dir string
	// KeepDirs says the caller keeps Dir after Run: each run's reasons
	// then say where its histories and logs are.
	KeepDirs bool
	// Progress gets a line when each run starts and ends. Nil discards.
	Progress io.Writer
	// Logger gets the harness's detailed log. Nil discards.
	Logger *slog.Logger
	// RunTimeout bounds one run's scenario script. Zero means 3 minutes
	// plus twice Duration.
	RunTimeout time.Duration
}

// Planned is one run: a scenario against one of its cases.
type Planned struct {
	Scenario *scenario.Scenario
	Case     *scenario.Case
}

// Plan returns the runs that the scenario names and backend filters
// select, in the order of scenario.All. It returns an error naming what is
// unknown and what is accepted, or saying that the selection is empty.
func Plan(scenarios, backends []string) ([]Planned, error) {
	all := scenario.All()
	want := map[string]bool{}
	for _, s := range scenarios {
		if s == "all" {
			want = nil
			break
		}
		if _, err := scenario.Lookup(s); err != nil {
			return nil, err
		}
		want[s] = true
	}
	if len(scenarios) == 0 {
		want = nil
	}
	labels := map[string]bool{}
	for _, k := range harness.Kinds() {
		labels[string(k)] = true
	}
	for _, s := range all {
		for _, c := range s.Cases {
			labels[c.Backend] = true
		}
	}
	for _, b := range backends {
		if !labels[b] {
			var acc []string
			for l := range labels {
				acc = append(acc, l)
			}
			slices.Sort(acc)
			return nil, fmt.Errorf("unknown backend %q; accepted: %s", b, strings.Join(acc, ", "))
		}
	}
	var out []Planned
	for _, s := range all {
		if want != nil && !want[s.Name] {
			continue
		}
		for i := range s.Cases {
			c := &s.Cases[i]
			if len(backends) > 0 && !slices.Contains(backends, string(c.Kind())) && !slices.Contains(backends, c.Backend) {
				continue
			}
			out = append(out, Planned{Scenario: s, Case: c})
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no scenario %s runs against backend %s; see fencer check --list",
			strings.Join(scenarios, ", "), strings.Join(backends, ", "))
	}
	return out, nil
}

// Validate checks the options that are not about the selection.
func (o *Options) Validate() error {
	var errs []error
	if o.Binary == "" {
		errs = append(errs, errors.New("check: no fencer binary given"))
	}
	if o.Dir == "" {
		errs = append(errs, errors.New("check: no directory for the runs given"))
	}
	if o.Duration < 0 || o.Duration > MaxDuration || (o.Duration > 0 && o.Duration < time.Second) {
		errs = append(errs, fmt.Errorf("check: duration %v is out of range; accepted: 0 for the short form, or 1s to %v", o.Duration, MaxDuration))
	}
	if o.RunTimeout < 0 {
		errs = append(errs, fmt.Errorf("check: run timeout %v is negative; zero means the default", o.RunTimeout))
	}
	return errors.Join(errs...)
}

// Outcome is one run's result.
type Outcome struct {
	// Analysis is the run's analysis, its Result's verdict including the
	// scenario's own checks and any harness failure.
	Analysis *analyze.Analysis
	// Dir is the run's directory.
	Dir string
	// Seed is the run's own seed (derived from Options.Seed, the
	// scenario and the backend).
	Seed uint64
	// Elapsed is how long the run took, start to analysis.
	Elapsed time.Duration
	// Err is the harness's error, if the run did not complete; it is also
	// among the Result's reasons.
	Err error
}

// RunSeed is the seed of one run: the same for the same Options.Seed,
// scenario and backend, whatever else is selected.
func RunSeed(seed uint64, scenarioName, backend string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(scenarioName + "/" + backend))
	return seed ^ h.Sum64()
}

// Run runs the selected scenarios one after the other and returns their
// outcomes. It returns an error, before running anything, for invalid
// options or an empty selection; and, with the outcomes so far, when ctx
// ends.
func Run(ctx context.Context, opts Options) ([]Outcome, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	plan, err := Plan(opts.Scenarios, opts.Backends)
	if err != nil {
		return nil, err
	}
	progress := opts.Progress
	if progress == nil {
		progress = io.Discard
	}
	var out []Outcome
	for i, pl := range plan {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		fmt.Fprintf(progress, "[%d/%d] %s × %s: expected %s ...\n", i+1, len(plan), pl.Scenario.Name, pl.Case.Backend, pl.Case.Expectation())
		o := runOne(ctx, &opts, i+1, pl)
		r := o.Analysis.Result
		fmt.Fprintf(progress, "[%d/%d] %s × %s: %s in %.1fs: %s\n", i+1, len(plan), pl.Scenario.Name, pl.Case.Backend,
			strings.ToUpper(string(r.Verdict)), o.Elapsed.Seconds(), firstReason(r))
		out = append(out, o)
	}
	return out, ctx.Err()
}

func firstReason(r analyze.Result) string {
	if len(r.Reasons) == 0 {
		return r.Observed
	}
	return r.Reasons[0]
}

// runOne runs one scenario against one case, always returning an
// Outcome with an analysis.
func runOne(ctx context.Context, opts *Options, index int, pl Planned) Outcome {
	start := time.Now()
	s, c := pl.Scenario, pl.Case
	seed := RunSeed(opts.Seed, s.Name, c.Backend)
	o := Outcome{Dir: filepath.Join(opts.Dir, fmt.Sprintf("%02d-%s-%s", index, s.Name, c.Backend)), Seed: seed}
	p := scenario.NewParams(opts.Duration, seed)
	timeout := opts.RunTimeout
	if timeout == 0 {
		timeout = 3*time.Minute + 2*opts.Duration
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("scenario", s.Name, "backend", c.Backend)

	var runErr, collectErr error
	var col *harness.Collected
	rctx, cancel := context.WithTimeout(ctx, timeout)
	env, err := harness.Start(rctx, harness.Config{
		Binary: opts.Binary, Dir: o.Dir, Setup: c.Setup, Workload: s.Workload, Seed: seed, Logger: logger,
	})
	if err != nil {
		runErr = fmt.Errorf("start the processes: %w", err)
	} else {
		logger.Info("check: run", "seed", seed, "dir", o.Dir)
		if err := s.Run(rctx, env, p); err != nil {
			runErr = err
		} else if err := rctx.Err(); err != nil {
			// A script may end quietly when its context does; an empty or
			// truncated history must not pass for a safe one.
			runErr = fmt.Errorf("the run was cut short: %w", err)
		}
		if ctx.Err() == nil {
			// Collect even after the script failed or timed out: what
			// happened until then is evidence too.
			cctx, ccancel := context.WithTimeout(ctx, 2*time.Minute)
			col, collectErr = env.Collect(cctx)
			ccancel()
		}
		if err := env.Close(); err != nil {
			logger.Warn("check: closing the run's processes", "err", err)
		}
	}
	cancel()

	run := &analyze.Run{
		Scenario: s.Name, Backend: c.Backend, Expected: c.Expected, Why: c.Why, Predicts: c.Predicts,
		Workload: s.Workload, TokenScope: c.Setup.TokenScope(), StoreUnfenced: c.Setup.StoreUnfenced(),
	}
	if col != nil {
		run.History, run.AcceptLog, run.Final, run.Replicas = col.History, col.AcceptLog, col.Final, col.Replicas
	}
	a, err := analyze.Analyze(run, &analyze.Options{LinearizabilityTimeout: 30 * time.Second})
	if err != nil {
		bare := *run
		bare.History, bare.AcceptLog, bare.Replicas = nil, nil, nil
		a, _ = analyze.Analyze(&bare, nil)
		fail(a, "the history could not be analyzed: "+err.Error())
	}
	o.Analysis = a
	switch {
	case runErr != nil:
		o.Err = runErr
		fail(a, "the run did not complete, so its verdict cannot be trusted: "+runErr.Error())
	case collectErr != nil:
		o.Err = collectErr
		fail(a, "collecting the run's results failed: "+collectErr.Error())
	}
	for _, v := range c.MustNot {
		if n := count(&a.Result, v); n > 0 {
			fail(a, fmt.Sprintf("%d %s, which this case must not show", n, v))
		}
	}
	if s.Check != nil && runErr == nil && col != nil {
		failures, notes := s.Check(a, c, p)
		for _, f := range failures {
			fail(a, f)
		}
		a.Result.Reasons = append(a.Result.Reasons, notes...)
	}
	if col != nil {
		for _, n := range col.Notes {
			a.Result.Reasons = append(a.Result.Reasons, "note: "+n)
		}
		if col.Torn > 0 {
			a.Result.Reasons = append(a.Result.Reasons, fmt.Sprintf("note: %d history file(s) ended in a torn line (a process killed while writing); it was skipped", col.Torn))
		}
	}
	note := fmt.Sprintf("note: run seed %d", seed)
	if opts.KeepDirs {
		note += "; histories and logs in " + o.Dir
	}
	a.Result.Reasons = append(a.Result.Reasons, note)
	o.Elapsed = time.Since(start)
	return o
}

// fail makes a's verdict fail, with reason first.
func fail(a *analyze.Analysis, reason string) {
	r := &a.Result
	if r.Verdict == analyze.VerdictPass && len(r.Reasons) > 0 && !strings.HasPrefix(r.Reasons[0], "note:") {
		// "safe as expected" or "reproduced" no longer holds as the verdict.
		r.Reasons[0] = "note: the history alone says: " + r.Reasons[0]
	}
	r.Verdict = analyze.VerdictFail
	r.Reasons = append([]string{reason}, r.Reasons...)
}

// count returns how often v showed up in r.
func count(r *analyze.Result, v analyze.Violation) int {
	switch v {
	case analyze.ViolationBelievedOverlap:
		return r.Overlaps.Believed
	case analyze.ViolationLostUpdate:
		return r.LostUpdates
	case analyze.ViolationStaleAccepted:
		return r.StaleAccepted
	case analyze.ViolationTokenRegression:
		return r.TokenRegressions
	}
	return 0
}

// Analyses returns the outcomes' analyses, in order.
func Analyses(out []Outcome) []*analyze.Analysis {
	as := make([]*analyze.Analysis, len(out))
	for i := range out {
		as[i] = out[i].Analysis
	}
	return as
}

// Passed reports whether every outcome passed.
func Passed(out []Outcome) bool {
	for _, o := range out {
		if o.Analysis.Result.Verdict != analyze.VerdictPass {
			return false
		}
	}
	return true
}
