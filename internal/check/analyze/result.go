package analyze

import (
	"fmt"
	"strings"
)

// Verdict is whether a run came out as its scenario expected.
type Verdict string

// The verdicts.
const (
	VerdictPass Verdict = "pass"
	VerdictFail Verdict = "fail"
)

// OverlapCounts counts overlapping holders both ways; see [HolderReport].
type OverlapCounts struct {
	// Observed counts pairs of intersecting observed windows.
	Observed int `json:"observed"`
	// Believed counts pairs of intersecting believed windows.
	Believed int `json:"believed"`
}

// Result is the verdict on one run with the counts it rests on: what
// `fencer check --json` prints, one object per scenario and backend. Its
// JSON keys are part of the CLI's interface; do not rename them.
type Result struct {
	// Scenario and Backend name the run.
	Scenario string `json:"scenario"`
	Backend  string `json:"backend"`
	// Expected is "safe" or "violation".
	Expected Expectation `json:"expected"`
	// Why is the scenario's reason for the expectation.
	Why string `json:"why"`
	// Overlaps counts overlapping holders, observed and believed.
	Overlaps OverlapCounts `json:"overlaps"`
	// StaleAccepted counts stale requests the store accepted; see
	// [StoreReport].
	StaleAccepted int `json:"stale_accepted"`
	// StaleRejected counts stale requests the store refused.
	StaleRejected int `json:"stale_rejected"`
	// LostUpdates counts lost updates; see [UpdateReport].
	LostUpdates int `json:"lost_updates"`
	// TokenRegressions counts grants that broke token order: tokens not
	// above an earlier grant's, and tokens granted twice.
	TokenRegressions int `json:"token_regressions"`
	// NoTokens is set when the grants carried no tokens (Redlock), so
	// TokenRegressions is 0 because nothing was checked.
	NoTokens bool `json:"no_tokens"`
	// Linearizable is true or false, or null when the search timed out or
	// there was nothing to check.
	Linearizable *bool `json:"linearizable"`
	// ReplicasAgree is null when the backend has no replicas.
	ReplicasAgree *bool `json:"replicas_agree"`
	// Verdict is "pass" or "fail", by the rules in the package
	// documentation.
	Verdict Verdict `json:"verdict"`
	// Observed summarizes what happened in one short line.
	Observed string `json:"observed"`
	// Reasons explain the verdict, one sentence each; lines that start
	// with "note:" do not affect it.
	Reasons []string `json:"reasons"`
}

// count returns how often the violation v showed up.
func (r *Result) count(v Violation) int {
	switch v {
	case ViolationBelievedOverlap:
		return r.Overlaps.Believed
	case ViolationLostUpdate:
		return r.LostUpdates
	case ViolationStaleAccepted:
		return r.StaleAccepted
	case ViolationTokenRegression:
		return r.TokenRegressions
	}
	return 0
}

func describeViolation(v Violation, n int) string {
	switch v {
	case ViolationBelievedOverlap:
		return plural(n, "believed overlap", "believed overlaps")
	case ViolationLostUpdate:
		return plural(n, "lost update", "lost updates")
	case ViolationStaleAccepted:
		return plural(n, "stale request accepted", "stale requests accepted")
	case ViolationTokenRegression:
		return plural(n, "token regression", "token regressions")
	}
	return fmt.Sprintf("%d %s", n, v)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// judge fills in the verdict, the observed line and the reasons of r from
// its counts and the analysis' notes.
func judge(r *Result, a *Analysis, predicts []Violation) {
	var reasons, notes []string
	if r.Overlaps.Observed > r.Overlaps.Believed {
		notes = append(notes, fmt.Sprintf("note: %s of a holder that had not noticed its lease end (e.g. paused): allowed, the fencing token is what protects the store",
			plural(r.Overlaps.Observed-r.Overlaps.Believed, "observed overlap", "observed overlaps")))
	}
	if r.NoTokens {
		notes = append(notes, "note: no tokens: the backend's grants carry no fencing token, so token order was not checked")
	}
	if a.Store.Mismatches > 0 {
		notes = append(notes, fmt.Sprintf("note: %s between the clients' view and the store's accept log",
			plural(a.Store.Mismatches, "disagreement", "disagreements")))
	}
	if a.Store.WrongRefusals > 0 {
		notes = append(notes, fmt.Sprintf("note: the store refused %s that was not stale", plural(a.Store.WrongRefusals, "request", "requests")))
	}
	for _, c := range []*LinearCheck{&a.Linearizability.Store, &a.Linearizability.Lock} {
		if c.Status == CheckTimeout {
			notes = append(notes, fmt.Sprintf("note: the %s linearizability search timed out: unknown", c.Name))
		}
	}
	if len(a.Updates.Unchecked) > 0 {
		notes = append(notes, "note: lost updates not checked on "+strings.Join(a.Updates.Unchecked, ", ")+": final state not read")
	}

	switch r.Expected {
	case ExpectSafe:
		for _, v := range []Violation{ViolationStaleAccepted, ViolationLostUpdate, ViolationTokenRegression} {
			if n := r.count(v); n > 0 {
				reasons = append(reasons, describeViolation(v, n))
			}
		}
		if r.Linearizable != nil && !*r.Linearizable {
			var which []string
			for _, c := range []*LinearCheck{&a.Linearizability.Store, &a.Linearizability.Lock} {
				if c.Status == CheckIllegal {
					which = append(which, c.Name)
				}
			}
			reasons = append(reasons, "not linearizable ("+strings.Join(which, " and ")+")")
		}
		if r.ReplicasAgree != nil && !*r.ReplicasAgree {
			reasons = append(reasons, "replicas differ: "+strings.Join(a.Replicas.Differ, ", "))
		}
		if len(reasons) == 0 {
			r.Verdict = VerdictPass
			reasons = []string{"safe as expected: no stale request accepted, no update lost, tokens in order" + linearNote(r) + replicaNote(r)}
		} else {
			r.Verdict = VerdictFail
			reasons = []string{"expected safe, but: " + strings.Join(reasons, "; ")}
		}
		if r.Overlaps.Believed > 0 {
			notes = append(notes, fmt.Sprintf("note: %s: the lock was granted while the previous holder was still entitled to it; fencing had to protect the store",
				plural(r.Overlaps.Believed, "believed overlap", "believed overlaps")))
		}
	default:
		kinds := predicts
		if len(kinds) == 0 {
			kinds = Violations()
		}
		var seen, others []string
		for _, v := range Violations() {
			n := r.count(v)
			if n == 0 {
				continue
			}
			if contains(kinds, v) {
				seen = append(seen, describeViolation(v, n))
			} else {
				others = append(others, describeViolation(v, n))
			}
		}
		if len(seen) > 0 {
			r.Verdict = VerdictPass
			reasons = []string{"reproduced: " + strings.Join(seen, ", ")}
		} else {
			r.Verdict = VerdictFail
			msg := "did not reproduce: expected " + joinOr(kinds) + ", observed none"
			if len(others) > 0 {
				msg += " (other violations: " + strings.Join(others, ", ") + ")"
			}
			reasons = []string{msg}
		}
	}
	r.Reasons = append(reasons, notes...)
	r.Observed = observedLine(r, a)
}

func linearNote(r *Result) string {
	if r.Linearizable == nil {
		return "; linearizability unknown"
	}
	return "; linearizable"
}

func replicaNote(r *Result) string {
	if r.ReplicasAgree == nil {
		return ""
	}
	return "; replicas agree"
}

func contains(vs []Violation, v Violation) bool {
	for _, x := range vs {
		if x == v {
			return true
		}
	}
	return false
}

func joinOr(vs []Violation) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = string(v)
	}
	return strings.Join(s, " or ")
}

// observedLine summarizes the run in one short line: the violations first,
// then the evidence that fencing worked, then the rest.
func observedLine(r *Result, a *Analysis) string {
	var parts []string
	add := func(n int, one, many string) {
		if n > 0 {
			parts = append(parts, plural(n, one, many))
		}
	}
	add(r.StaleAccepted, "stale accepted", "stale accepted")
	add(r.LostUpdates, "lost update", "lost updates")
	add(r.TokenRegressions, "token regression", "token regressions")
	add(r.Overlaps.Believed, "believed overlap", "believed overlaps")
	if r.Linearizable != nil && !*r.Linearizable {
		parts = append(parts, "not linearizable")
	}
	if r.ReplicasAgree != nil && !*r.ReplicasAgree {
		parts = append(parts, "replicas differ")
	}
	add(r.StaleRejected, "stale rejected", "stale rejected")
	add(r.Overlaps.Observed-r.Overlaps.Believed, "observed overlap", "observed overlaps")
	if r.NoTokens {
		parts = append(parts, "no tokens")
	}
	if r.Linearizable == nil && (a.Linearizability.Store.Status == CheckTimeout || a.Linearizability.Lock.Status == CheckTimeout) {
		parts = append(parts, "linearizability unknown")
	}
	if len(parts) == 0 {
		return "no anomaly"
	}
	return strings.Join(parts, ", ")
}
