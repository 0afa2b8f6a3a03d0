package analyze

import (
	"fmt"
	"strings"

	"github.com/fencerlock/fencer/internal/history"
	"github.com/fencerlock/fencer/internal/store"
	"github.com/fencerlock/fencer/server"
)

// Run is everything one scenario run against one backend left behind: what
// was expected, the merged history, and what the store and the servers held
// at the end. The harness builds it; [Analyze] reads it and never modifies
// it. A Run is plain data and can be encoded as JSON.
type Run struct {
	// Scenario names the scenario, e.g. "pause-33-34".
	Scenario string `json:"scenario"`
	// Backend is the backend's kind, e.g. "redis", "redlock", "postgres",
	// "fencer".
	Backend string `json:"backend"`
	// Expected is what the scenario predicts for this backend.
	Expected Expectation `json:"expected"`
	// Why says in one sentence why that is expected; the report shows it.
	Why string `json:"why"`
	// Predicts lists the kinds of violation that count as a reproduction
	// when Expected is ExpectViolation. Empty means any of them. It is
	// ignored when Expected is ExpectSafe.
	Predicts []Violation `json:"predicts,omitempty"`
	// Workload is what the clients did with the store: WorkloadCounter or
	// WorkloadSet. It says how Event.Value is encoded. Empty means
	// WorkloadCounter.
	Workload Workload `json:"workload,omitempty"`
	// TokenScope says which grants must have distinct, increasing tokens:
	// those of one lock (TokensPerLock, the default when empty) or all grants
	// of the backend (TokensGlobal, e.g. the fencer server, whose token
	// counter is shared by every lock).
	TokenScope TokenScope `json:"token_scope,omitempty"`
	// History is the merged history of every worker and the harness,
	// ordered by time (as history.Merge returns it). The event kinds and
	// attributes the checkers read are listed in the package documentation.
	History []history.Event `json:"history"`
	// AcceptLog is the store's accept log in store order (the order of
	// GET /v1/log, concatenated across store restarts). It may be empty: the
	// store checks then fall back on the client-side view.
	AcceptLog []store.Entry `json:"accept_log,omitempty"`
	// Final is the store's state read after the workload stopped.
	Final FinalState `json:"final"`
	// Replicas are the lock servers' own states at the end (GET
	// /debug/state of every node). Empty for backends without replicas.
	Replicas []server.NodeState `json:"replicas,omitempty"`
	// StoreUnfenced is set for the control run in which the store accepted
	// every token ("without fencing"). The zero value means the store
	// checked tokens, as it normally does.
	StoreUnfenced bool `json:"store_unfenced,omitempty"`
}

// FinalState is what the harness read from the store at the end, per key.
// A key that is missing from the map of its workload was not read; the
// lost-update check then says it could not check that key.
type FinalState struct {
	// Counters maps a key to its counter value (WorkloadCounter). A key
	// that was never written reads as 0.
	Counters map[string]int64 `json:"counters,omitempty"`
	// Sets maps a key to its elements (WorkloadSet), in any order.
	Sets map[string][]string `json:"sets,omitempty"`
}

// Expectation is what a scenario predicts for a backend.
type Expectation string

// The expectations.
const (
	// ExpectSafe: the backend and the fenced store must keep the data
	// safe: no stale write accepted, no update lost, tokens in order.
	ExpectSafe Expectation = "safe"
	// ExpectViolation: the scenario demonstrates a failure the articles
	// describe; the run passes only if the failure showed up.
	ExpectViolation Expectation = "violation"
)

// Violation is a kind of safety violation a scenario can predict.
type Violation string

// The violations a scenario can predict; see [Run.Predicts].
const (
	// ViolationBelievedOverlap: two clients each believed they held the
	// lock at the same time (their believed windows intersect).
	ViolationBelievedOverlap Violation = "believed-overlap"
	// ViolationLostUpdate: an acknowledged write is missing from the
	// store's final state.
	ViolationLostUpdate Violation = "lost-update"
	// ViolationStaleAccepted: the store accepted a request whose token was
	// below one it had already accepted for that key.
	ViolationStaleAccepted Violation = "stale-accepted"
	// ViolationTokenRegression: a token was granted twice, or a later
	// grant got a token not above an earlier one.
	ViolationTokenRegression Violation = "token-regression"
)

// Violations lists every Violation, in the order the report shows them.
func Violations() []Violation {
	return []Violation{ViolationBelievedOverlap, ViolationLostUpdate, ViolationStaleAccepted, ViolationTokenRegression}
}

// Workload is how the clients use the store, and so how values are
// encoded.
type Workload string

// The workloads.
const (
	// WorkloadCounter: read the value v with the token, write v+1 with the
	// token. Values are decimal integers; an empty value (a key never
	// written) is 0.
	WorkloadCounter Workload = "counter"
	// WorkloadSet: read the set, add this worker's next unique element,
	// write the whole set back. A value is either a JSON array of strings
	// or the elements separated by commas; an empty value is the empty
	// set. Order does not matter.
	WorkloadSet Workload = "set"
)

// TokenScope says over which grants tokens must be unique and increasing.
type TokenScope string

// The token scopes.
const (
	// TokensPerLock: tokens of one lock are unique and increasing; two
	// locks may share numbers (e.g. a Redis INCR counter per lock).
	TokensPerLock TokenScope = "lock"
	// TokensGlobal: every grant of the backend, on any lock, has a unique
	// token, increasing in real time (the fencer server's single counter).
	TokensGlobal TokenScope = "global"
)

// validate checks the enumerations of r and fills in the defaults of a
// copy.
func (r *Run) normalized() (Run, error) {
	n := *r
	var errs []string
	switch n.Expected {
	case ExpectSafe, ExpectViolation:
	default:
		errs = append(errs, fmt.Sprintf("expected outcome %q: want %q or %q", n.Expected, ExpectSafe, ExpectViolation))
	}
	for _, v := range n.Predicts {
		if !validViolation(v) {
			errs = append(errs, fmt.Sprintf("predicted violation %q: want one of %s", v, joinViolations(Violations())))
		}
	}
	switch n.Workload {
	case "":
		n.Workload = WorkloadCounter
	case WorkloadCounter, WorkloadSet:
	default:
		errs = append(errs, fmt.Sprintf("workload %q: want %q or %q", n.Workload, WorkloadCounter, WorkloadSet))
	}
	switch n.TokenScope {
	case "":
		n.TokenScope = TokensPerLock
	case TokensPerLock, TokensGlobal:
	default:
		errs = append(errs, fmt.Sprintf("token scope %q: want %q or %q", n.TokenScope, TokensPerLock, TokensGlobal))
	}
	if len(errs) > 0 {
		return Run{}, fmt.Errorf("analyze: run %s/%s: %s", r.Scenario, r.Backend, strings.Join(errs, "; "))
	}
	return n, nil
}

func validViolation(v Violation) bool {
	for _, k := range Violations() {
		if v == k {
			return true
		}
	}
	return false
}

func joinViolations(vs []Violation) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = string(v)
	}
	return strings.Join(s, ", ")
}
