package analyze

import (
	"fmt"
	"sort"
	"time"

	"github.com/fencerlock/fencer/internal/history"
)

// DefaultLinearizabilityTimeout bounds each porcupine search when
// Options.LinearizabilityTimeout is zero.
const DefaultLinearizabilityTimeout = time.Minute

// Options tune Analyze. The zero value (or nil) gives the defaults.
type Options struct {
	// LinearizabilityTimeout bounds each of the two porcupine searches
	// (store and lock). When it runs out, linearizability is reported as
	// unknown (null), never as a failure. Zero means
	// DefaultLinearizabilityTimeout; it must not be negative.
	LinearizabilityTimeout time.Duration
}

// Analysis is everything the checkers found in one run: the Result and
// each checker's report with its evidence. It is what the report package
// renders. It is not modified after Analyze returns and may be read
// concurrently.
type Analysis struct {
	// Run is the run analyzed, with its defaults filled in. Not encoded.
	Run *Run `json:"-"`
	// Start and End are the times of the first and last events of the
	// history: the timeline's origin and end.
	Start history.Time `json:"start"`
	// End: see Start.
	End history.Time `json:"end"`
	// Operations are the history's operations, paired. Not encoded: they
	// repeat the history.
	Operations []Operation `json:"-"`
	// Spans are the pauses and faults.
	Spans []Span `json:"spans,omitempty"`

	// Holders is check 1: overlapping holders.
	Holders HolderReport `json:"holders"`
	// Updates is check 2: lost updates.
	Updates UpdateReport `json:"updates"`
	// Tokens is check 3: token order.
	Tokens TokenReport `json:"tokens"`
	// Store is check 4: the store's accept log.
	Store StoreReport `json:"store"`
	// Linearizability is check 5: porcupine, store and lock.
	Linearizability LinearizabilityReport `json:"linearizability"`
	// Replicas is check 6: replica agreement.
	Replicas ReplicaReport `json:"replicas"`

	// Result is the verdict and its counts.
	Result Result `json:"result"`
}

// Locks returns the names of the locks that appear in the history's
// acquires, sorted.
func (a *Analysis) Locks() []string {
	seen := map[string]bool{}
	var locks []string
	for i := range a.Operations {
		o := &a.Operations[i]
		if o.Type == OpAcquire && o.Lock != "" && !seen[o.Lock] {
			seen[o.Lock] = true
			locks = append(locks, o.Lock)
		}
	}
	sort.Strings(locks)
	return locks
}

// Analyze runs every checker over run and judges it. It reads run and
// never modifies it; it starts no processes and does no I/O. The porcupine
// searches run on their own goroutines, which have all returned when
// Analyze does.
//
// It fails when the run is malformed: an unknown expectation, workload or
// token scope, a completion without its invocation, a value that is not
// of the workload's encoding, or an unparsable valid_until. The error
// names the event or field.
func Analyze(run *Run, opts *Options) (*Analysis, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.LinearizabilityTimeout < 0 {
		return nil, fmt.Errorf("analyze: linearizability timeout %v is negative: use 0 for the default (%v) or a positive duration",
			o.LinearizabilityTimeout, DefaultLinearizabilityTimeout)
	}
	if o.LinearizabilityTimeout == 0 {
		o.LinearizabilityTimeout = DefaultLinearizabilityTimeout
	}
	r, err := run.normalized()
	if err != nil {
		return nil, err
	}
	// The checkers rely on time order; Merge gives it, hand-made runs may
	// not.
	r.History = append([]history.Event(nil), run.History...)
	sort.SliceStable(r.History, func(i, j int) bool { return r.History[i].Time < r.History[j].Time })

	a := &Analysis{Run: &r}
	if n := len(r.History); n > 0 {
		a.Start, a.End = r.History[0].Time, r.History[n-1].Time
	}
	tl := timeline{origin: a.Start, end: a.End}
	if a.Operations, err = Operations(r.History); err != nil {
		return nil, err
	}
	a.Spans = Spans(r.History, a.End)
	if a.Holders, err = checkHolders(r.History, tl); err != nil {
		return nil, err
	}
	if a.Updates, err = checkUpdates(&r, a.Operations, tl); err != nil {
		return nil, err
	}
	a.Tokens = checkTokens(r.TokenScope, a.Operations, tl)
	a.Store = checkStore(&r, a.Operations, tl)
	if a.Linearizability, err = checkLinearizability(&r, a.Operations, tl, o.LinearizabilityTimeout); err != nil {
		return nil, err
	}
	a.Replicas = checkReplicas(r.Replicas)

	a.Result = Result{
		Scenario:         r.Scenario,
		Backend:          r.Backend,
		Expected:         r.Expected,
		Why:              r.Why,
		Overlaps:         OverlapCounts{Observed: a.Holders.Observed, Believed: a.Holders.Believed},
		StaleAccepted:    a.Store.StaleAccepted,
		StaleRejected:    a.Store.StaleRejected,
		LostUpdates:      a.Updates.Lost,
		TokenRegressions: a.Tokens.Violations(),
		NoTokens:         a.Tokens.NoTokens,
		Linearizable:     a.Linearizability.Linearizable(),
		ReplicasAgree:    a.Replicas.Agree,
	}
	judge(&a.Result, a, r.Predicts)
	return a, nil
}

// Findings returns every checker's findings, in the order of the checks:
// holders, updates, tokens, store, linearizability (store, lock),
// replicas.
func (a *Analysis) Findings() []Finding {
	var all []Finding
	for _, fs := range [][]Finding{a.Holders.Findings, a.Updates.Findings, a.Tokens.Findings, a.Store.Findings,
		a.Linearizability.Store.Findings, a.Linearizability.Lock.Findings, a.Replicas.Findings} {
		all = append(all, fs...)
	}
	return all
}
