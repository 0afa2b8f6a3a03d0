package analyze

import (
	"strings"
	"testing"
	"time"

	"github.com/fencerlock/fencer/internal/history"
	"github.com/fencerlock/fencer/server"
)

// kleppmann writes the 33/34 history of Kleppmann's article: client 1 gets
// token 33, reads, pauses past its lease; client 2 gets 34, reads, writes
// 1; client 1 wakes and writes 1 with 33. stale says how the store answers
// that last write: rejected (fenced) or accepted (unfenced).
func kleppmann(staleAccepted bool) *Run {
	b := newBuilder()
	a := b.invoke(0, "c1", history.AcquireInvoke)
	b.done(1, "c1", a, history.AcquireOK, tok(33), validUntil(100), attr(AttrSafeToken, "true"))
	r := b.invoke(2, "c1", history.ReadInvoke, tok(33))
	b.done(3, "c1", r, history.ReadOK, val("0"))
	b.event(4, "c1", history.Pause)
	a2 := b.invoke(5, "c2", history.AcquireInvoke)
	b.done(110, "c2", a2, history.AcquireOK, tok(34), validUntil(210), attr(AttrSafeToken, "true"))
	r2 := b.invoke(111, "c2", history.ReadInvoke, tok(34))
	b.done(112, "c2", r2, history.ReadOK, val("0"))
	w2 := b.invoke(113, "c2", history.WriteInvoke, tok(34), val("1"))
	b.done(114, "c2", w2, history.WriteOK, tok(34))
	rel2 := b.invoke(115, "c2", history.ReleaseInvoke, tok(34))
	b.done(116, "c2", rel2, history.ReleaseOK)
	b.event(150, "c1", history.Resume)
	w1 := b.invoke(151, "c1", history.WriteInvoke, tok(33), val("1"))
	run := &Run{Scenario: "pause-33-34", Backend: "fencer", Expected: ExpectSafe,
		Why: "the store refuses token 33 after 34", Workload: WorkloadCounter, TokenScope: TokensGlobal,
		Final: FinalState{Counters: map[string]int64{"L": 1}}}
	if staleAccepted {
		b.done(152, "c1", w1, history.WriteOK, tok(33))
	} else {
		b.done(152, "c1", w1, history.WriteRejected, tok(33), attr(AttrStatus, "409"))
	}
	b.event(153, "c1", history.LeaseLost, tok(33))
	rel1 := b.invoke(154, "c1", history.ReleaseInvoke, tok(33))
	b.done(155, "c1", rel1, history.ReleaseFail)
	run.History = b.events
	return run
}

func TestKleppmannFenced(t *testing.T) {
	run := kleppmann(false)
	run.AcceptLog = entries(t,
		"get L 33 yes 33",
		"get L 34 yes 34",
		"put L 34 yes 34",
		"put L 33 no 34",
	)
	a := mustAnalyze(t, run)
	r := a.Result
	if r.Verdict != VerdictPass || r.StaleAccepted != 0 || r.StaleRejected != 1 || r.LostUpdates != 0 ||
		r.TokenRegressions != 0 || lin(r.Linearizable) != "true" || r.ReplicasAgree != nil {
		t.Fatalf("fenced 33/34: %+v; want pass, 0 stale accepted, 1 rejected, 0 lost, linearizable", r)
	}
	if r.Overlaps.Observed != 1 || r.Overlaps.Believed != 0 {
		t.Fatalf("overlaps %+v; want the paused holder's observed overlap only", r.Overlaps)
	}
	rej := findings(a, FindingStaleRejected)
	if len(rej) != 1 || len(rej[0].Entries) != 2 || rej[0].Entries[1].Token != 33 || rej[0].Entries[0].Token != 34 {
		t.Fatalf("stale-rejected evidence %+v; want the refusal of 33 with the acceptance of 34", rej)
	}
	if len(a.Store.Writes) != 2 || a.Store.Writes[1].Class != WriteRejected || a.Store.Writes[0].Class != WriteAccepted {
		t.Fatalf("write classes %+v", a.Store.Writes)
	}
	if a.Store.Mismatches != 0 {
		t.Fatalf("client and log disagree: %+v", findings(a, FindingLogMismatch))
	}
	if !strings.Contains(r.Observed, "1 stale rejected") || !strings.Contains(r.Observed, "1 observed overlap") {
		t.Fatalf("observed %q", r.Observed)
	}
}

func TestKleppmannUnfenced(t *testing.T) {
	logged := entries(t,
		"get L 33 yes 33",
		"get L 34 yes 34",
		"put L 34 yes 34",
		"put L 33 yes 33",
	)
	for _, tc := range []struct {
		name     string
		log      bool
		expected Expectation
		verdict  Verdict
	}{
		{"demonstration with accept log", true, ExpectViolation, VerdictPass},
		{"demonstration from the client side", false, ExpectViolation, VerdictPass},
		{"expected safe", true, ExpectSafe, VerdictFail},
	} {
		t.Run(tc.name, func(t *testing.T) {
			run := kleppmann(true)
			run.StoreUnfenced = true
			run.Expected = tc.expected
			run.Predicts = []Violation{ViolationStaleAccepted, ViolationLostUpdate}
			if tc.log {
				run.AcceptLog = logged
			}
			a := mustAnalyze(t, run)
			r := a.Result
			if r.StaleAccepted != 1 || r.LostUpdates != 1 || r.Verdict != tc.verdict {
				t.Fatalf("unfenced 33/34: %+v; want 1 stale accepted, 1 lost update, %s", r, tc.verdict)
			}
			// Without fencing the store is a plain register, and this
			// history is a linearizable one.
			if lin(r.Linearizable) != "true" {
				t.Fatalf("linearizable %s; want true for the plain register", lin(r.Linearizable))
			}
			lost := findings(a, FindingLostUpdate)
			if len(lost) == 0 || !hasEvent(lost[0].Events, "c1", history.WriteOK) || !hasEvent(lost[0].Events, "c2", history.WriteOK) {
				t.Fatalf("lost-update evidence %+v; want both writes of 1", lost)
			}
			if got := a.Updates.LostValues["L"]; len(got) != 1 || got[0] != "1" {
				t.Fatalf("lost values %v; want [1]", got)
			}
			stale := findings(a, FindingStaleAccepted)
			if len(stale) != 1 {
				t.Fatalf("stale-accepted findings %+v", stale)
			}
			if a.Store.Writes[1].Class != WriteStaleAccepted {
				t.Fatalf("c1's write is %s; want stale-accepted", a.Store.Writes[1].Class)
			}
			switch tc.verdict {
			case VerdictPass:
				if !strings.HasPrefix(r.Reasons[0], "reproduced: ") {
					t.Fatalf("reasons %q", r.Reasons)
				}
			default:
				if !strings.Contains(r.Reasons[0], "stale request accepted") || !strings.Contains(r.Reasons[0], "lost update") {
					t.Fatalf("reasons %q", r.Reasons)
				}
			}
		})
	}
}

// A fenced store's log that accepts 33 after 34 is a stale acceptance
// even when the run says the store was fenced (a store bug).
func TestStaleAcceptedByFencedStore(t *testing.T) {
	run := kleppmann(true)
	run.AcceptLog = entries(t, "get L 33 yes 33", "get L 34 yes 34", "put L 34 yes 34", "put L 33 yes 33")
	a := mustAnalyze(t, run)
	if a.Result.Verdict != VerdictFail || a.Result.StaleAccepted != 1 || lin(a.Result.Linearizable) != "false" {
		t.Fatalf("%+v; want fail with a stale acceptance and a non-linearizable fenced register", a.Result)
	}
	if f := findings(a, FindingStaleAccepted); !strings.Contains(f[0].Summary, "although the store checks tokens") {
		t.Fatalf("summary %q", f[0].Summary)
	}
}

func TestBelievedOverlap(t *testing.T) {
	b := newBuilder()
	a1 := b.invoke(0, "c1", history.AcquireInvoke)
	b.done(1, "c1", a1, history.AcquireOK, validUntil(100))
	a2 := b.invoke(2, "c2", history.AcquireInvoke)
	b.done(50, "c2", a2, history.AcquireOK, validUntil(150))
	r1 := b.invoke(120, "c1", history.ReleaseInvoke)
	b.done(121, "c1", r1, history.ReleaseOK)
	r2 := b.invoke(160, "c2", history.ReleaseInvoke)
	b.done(161, "c2", r2, history.ReleaseOK)
	run := &Run{Scenario: "redlock-clock-jump", Backend: "redlock", Expected: ExpectViolation,
		Predicts: []Violation{ViolationBelievedOverlap}, History: b.events}
	a := mustAnalyze(t, run)
	r := a.Result
	if r.Overlaps.Believed != 1 || r.Overlaps.Observed != 1 || r.Verdict != VerdictPass || !r.NoTokens {
		t.Fatalf("%+v; want 1 believed overlap, pass, no tokens", r)
	}
	f := findings(a, FindingBelievedOverlap)
	if len(f) != 1 || !hasEvent(f[0].Events, "c1", history.AcquireOK) || !hasEvent(f[0].Events, "c2", history.AcquireOK) {
		t.Fatalf("evidence %+v; want both acquire-ok events", f)
	}
	// The believed span is 50..100ms: the summary says for how long.
	if !strings.Contains(f[0].Summary, "for 50.0ms from 50.0ms") {
		t.Fatalf("summary %q", f[0].Summary)
	}
	w := a.Holders.Windows
	if len(w) != 2 || w[0].BelievedEnd != at(100) || w[0].BelievedEndBy != AttrValidUntil || w[0].ObservedEnd != at(120) || w[0].ObservedEndBy != "release" {
		t.Fatalf("windows %+v", w)
	}
	if !strings.Contains(strings.Join(r.Reasons, "\n"), "no tokens") {
		t.Fatalf("reasons %q; want the no-tokens note", r.Reasons)
	}
}

// A renewal extends the believed window; a kill ends the observed one.
func TestWindowsExtendedAndKilled(t *testing.T) {
	b := newBuilder()
	a1 := b.invoke(0, "c1", history.AcquireInvoke)
	b.done(1, "c1", a1, history.AcquireOK, tok(1), validUntil(30))
	b.event(20, "c1", KindLeaseExtended, tok(1), validUntil(60))
	b.event(40, "nemesis", history.FaultStart, attr(AttrFault, FaultKill), attr(AttrTarget, "c1"))
	a2 := b.invoke(41, "c2", history.AcquireInvoke)
	b.done(70, "c2", a2, history.AcquireOK, tok(2), validUntil(130))
	a := mustAnalyze(t, &Run{Scenario: "s", Backend: "fencer", Expected: ExpectSafe, History: b.events})
	w := a.Holders.Windows
	if len(w) != 2 || w[0].ObservedEnd != at(40) || w[0].ObservedEndBy != "killed" || w[0].BelievedEnd != at(40) {
		t.Fatalf("c1's window %+v; want it ended by the kill at 40ms", w[0])
	}
	if w[1].ObservedEnd != at(70) || w[1].ObservedEndBy != "end of history" {
		t.Fatalf("c2's window %+v", w[1])
	}
	if a.Result.Overlaps != (OverlapCounts{}) {
		t.Fatalf("overlaps %+v", a.Result.Overlaps)
	}
	if len(a.Spans) != 1 || !a.Spans[0].Open || a.Spans[0].Label != "kill c1" {
		t.Fatalf("spans %+v", a.Spans)
	}
}

// counterRun is a sequential counter history: each client acquires with
// the next token, reads and writes.
func counterRun() (*builder, *Run) {
	b := newBuilder()
	run := &Run{Scenario: "s", Backend: "fencer", Expected: ExpectSafe, Workload: WorkloadCounter,
		Final: FinalState{Counters: map[string]int64{}}}
	return b, run
}

func TestLinearizableRun(t *testing.T) {
	b, run := counterRun()
	for i, c := range []string{"c1", "c2", "c3"} {
		t0 := float64(i * 10)
		a := b.invoke(t0, c, history.AcquireInvoke)
		b.done(t0+1, c, a, history.AcquireOK, tok(uint64(i+1)))
		r := b.invoke(t0+2, c, history.ReadInvoke, tok(uint64(i+1)))
		b.done(t0+3, c, r, history.ReadOK, val(itoa2(i)))
		w := b.invoke(t0+4, c, history.WriteInvoke, tok(uint64(i+1)), val(itoa2(i+1)))
		b.done(t0+5, c, w, history.WriteOK)
		rel := b.invoke(t0+6, c, history.ReleaseInvoke)
		b.done(t0+7, c, rel, history.ReleaseOK)
	}
	run.History = b.events
	run.Final.Counters["L"] = 3
	a := mustAnalyze(t, run)
	if lin(a.Result.Linearizable) != "true" || a.Result.Verdict != VerdictPass || a.Result.Observed != "no anomaly" {
		t.Fatalf("%+v", a.Result)
	}
	if a.Linearizability.Store.Status != CheckOK || a.Linearizability.Lock.Status != CheckOK {
		t.Fatalf("store %s, lock %s", a.Linearizability.Store.Status, a.Linearizability.Lock.Status)
	}
	// 6 reads and writes plus the final read; 3 grants.
	if a.Linearizability.Store.Operations != 7 || a.Linearizability.Lock.Operations != 3 {
		t.Fatalf("operations: store %d, lock %d", a.Linearizability.Store.Operations, a.Linearizability.Lock.Operations)
	}
	var sb strings.Builder
	if err := a.Linearizability.Store.Visualize(&sb); err != nil || !strings.Contains(sb.String(), "<html") {
		t.Fatalf("Visualize: %v", err)
	}
}

func TestNotLinearizableStore(t *testing.T) {
	b, run := counterRun()
	a := b.invoke(0, "c1", history.AcquireInvoke)
	b.done(1, "c1", a, history.AcquireOK, tok(1))
	w := b.invoke(2, "c1", history.WriteInvoke, tok(1), val("1"))
	b.done(3, "c1", w, history.WriteOK)
	// A read that completes after the write, with a higher token, sees the
	// old value: no order of these operations explains it.
	a2 := b.invoke(4, "c2", history.AcquireInvoke)
	b.done(5, "c2", a2, history.AcquireOK, tok(2))
	r := b.invoke(6, "c2", history.ReadInvoke, tok(2))
	b.done(7, "c2", r, history.ReadOK, val("0"))
	run.History = b.events
	run.Final.Counters["L"] = 1
	an := mustAnalyze(t, run)
	if lin(an.Result.Linearizable) != "false" || an.Result.Verdict != VerdictFail {
		t.Fatalf("%+v; want not linearizable, fail", an.Result)
	}
	if an.Linearizability.Store.Status != CheckIllegal || an.Linearizability.Lock.Status != CheckOK {
		t.Fatalf("store %s, lock %s", an.Linearizability.Store.Status, an.Linearizability.Lock.Status)
	}
	f := findings(an, FindingNotLinearizable)
	if len(f) != 1 || f[0].Lock != "L" || !hasEvent(f[0].Events, "c2", history.ReadOK) {
		t.Fatalf("evidence %+v; want c2's read", f)
	}
	if !strings.Contains(an.Result.Reasons[0], "not linearizable (store)") {
		t.Fatalf("reasons %q", an.Result.Reasons)
	}
	var sb strings.Builder
	if err := an.Linearizability.Store.Visualize(&sb); err != nil {
		t.Fatalf("Visualize of an illegal history: %v", err)
	}
}

// indeterminate: c2's write of 2 times out (or its worker dies). It may
// have applied or not: both final values are linearizable, neither is a
// failure. A final value that no order explains still is.
func TestIndeterminateWrite(t *testing.T) {
	for _, tc := range []struct {
		name   string
		killed bool // no completion at all
		final  int64
		lin    string
	}{
		{"applied", false, 2, "true"},
		{"not applied", false, 1, "true"},
		{"killed, applied", true, 2, "true"},
		{"killed, not applied", true, 1, "true"},
		{"impossible final value", false, 5, "false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, run := counterRun()
			a := b.invoke(0, "c1", history.AcquireInvoke)
			b.done(1, "c1", a, history.AcquireOK, tok(1))
			r := b.invoke(2, "c1", history.ReadInvoke, tok(1))
			b.done(3, "c1", r, history.ReadOK, val("0"))
			w := b.invoke(4, "c1", history.WriteInvoke, tok(1), val("1"))
			b.done(5, "c1", w, history.WriteOK)
			a2 := b.invoke(10, "c2", history.AcquireInvoke)
			b.done(11, "c2", a2, history.AcquireOK, tok(2))
			r2 := b.invoke(12, "c2", history.ReadInvoke, tok(2))
			b.done(13, "c2", r2, history.ReadOK, val("1"))
			w2 := b.invoke(14, "c2", history.WriteInvoke, tok(2), val("2"))
			if !tc.killed {
				b.done(500, "c2", w2, history.WriteUnknown, attr("error", "timeout"))
			}
			b.event(600, "nemesis", history.FaultStart, attr(AttrFault, "noop"))
			run.History = b.events
			run.Final.Counters["L"] = tc.final
			an := mustAnalyze(t, run)
			if got := lin(an.Result.Linearizable); got != tc.lin {
				t.Fatalf("linearizable %s; want %s (%+v)", got, tc.lin, an.Linearizability.Store.Findings)
			}
			if an.Linearizability.Store.Open != 1 {
				t.Fatalf("open operations %d; want 1", an.Linearizability.Store.Open)
			}
			if tc.lin == "true" && (an.Result.Verdict != VerdictPass || an.Result.LostUpdates != 0) {
				t.Fatalf("%+v; the uncertain write must not fail the run", an.Result)
			}
		})
	}
}

func TestTokenChecks(t *testing.T) {
	for _, tc := range []struct {
		name        string
		scope       TokenScope
		build       func(b *builder)
		regressions int
		duplicates  int
		lockLin     string
	}{
		{"increasing", TokensPerLock, func(b *builder) {
			grant(b, "c1", "L", 0, 1, 5)
			grant(b, "c2", "L", 2, 3, 6)
		}, 0, 0, "true"},
		{"regression", TokensPerLock, func(b *builder) {
			grant(b, "c1", "L", 0, 5, 8)
			grant(b, "c2", "L", 10, 12, 7)
		}, 1, 0, "false"},
		{"duplicate of concurrent grants", TokensPerLock, func(b *builder) {
			grant(b, "c1", "L", 0, 5, 7)
			grant(b, "c2", "L", 1, 6, 7)
		}, 0, 1, "false"},
		{"same token again later is a regression", TokensPerLock, func(b *builder) {
			grant(b, "c1", "L", 0, 5, 7)
			grant(b, "c2", "L", 10, 12, 7)
		}, 1, 0, "false"},
		{"concurrent grants in either order", TokensPerLock, func(b *builder) {
			grant(b, "c1", "L", 0, 10, 9)
			grant(b, "c2", "L", 1, 5, 8)
		}, 0, 0, "true"},
		{"two locks may share numbers", TokensPerLock, func(b *builder) {
			grant(b, "c1", "A", 0, 5, 5)
			grant(b, "c2", "B", 10, 12, 5)
		}, 0, 0, "true"},
		{"global tokens may not", TokensGlobal, func(b *builder) {
			grant(b, "c1", "A", 0, 5, 5)
			grant(b, "c2", "B", 10, 12, 5)
		}, 1, 0, "false"},
		{"unknown acquire is open", TokensPerLock, func(b *builder) {
			a := b.invoke(0, "c3", history.AcquireInvoke)
			b.done(1, "c3", a, history.AcquireUnknown)
			grant(b, "c1", "L", 2, 3, 4)
			grant(b, "c2", "L", 5, 6, 9)
		}, 0, 0, "true"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBuilder()
			tc.build(b)
			an := mustAnalyze(t, &Run{Scenario: "s", Backend: "redis", Expected: ExpectSafe, TokenScope: tc.scope, History: b.events})
			tr := an.Tokens
			if tr.Regressions != tc.regressions || tr.Duplicates != tc.duplicates {
				t.Fatalf("regressions %d duplicates %d; want %d %d (%+v)", tr.Regressions, tr.Duplicates, tc.regressions, tc.duplicates, tr.Findings)
			}
			if got := lin(an.Linearizability.Lock.Linearizable()); got != tc.lockLin {
				t.Fatalf("lock linearizable %s; want %s", got, tc.lockLin)
			}
			want := VerdictPass
			if tc.regressions+tc.duplicates > 0 {
				want = VerdictFail
				if an.Result.TokenRegressions != tc.regressions+tc.duplicates {
					t.Fatalf("token_regressions %d", an.Result.TokenRegressions)
				}
				var f []Finding
				f = append(findings(an, FindingTokenRegression), findings(an, FindingTokenDuplicate)...)
				if len(f) != tc.regressions+tc.duplicates || len(f[0].Events) != 4 {
					t.Fatalf("evidence %+v; want both grants' events", f)
				}
			}
			if an.Result.Verdict != want {
				t.Fatalf("verdict %s; want %s: %q", an.Result.Verdict, want, an.Result.Reasons)
			}
		})
	}
}

// grant records an acquire by process on lock from ms to done with token.
func grant(b *builder, process, l string, ms, done float64, token uint64) {
	a := b.invoke(ms, process, history.AcquireInvoke, lock(l))
	b.done(done, process, a, history.AcquireOK, lock(l), tok(token))
}

func TestSetLostElement(t *testing.T) {
	b := newBuilder()
	grant(b, "c1", "S", 0, 1, 1)
	r := b.invoke(2, "c1", history.ReadInvoke, lock("S"), tok(1))
	b.done(3, "c1", r, history.ReadOK, lock("S"), val(""))
	w := b.invoke(4, "c1", history.WriteInvoke, lock("S"), tok(1), val("a"))
	b.done(5, "c1", w, history.WriteOK, lock("S"))
	grant(b, "c2", "S", 10, 11, 2)
	r2 := b.invoke(12, "c2", history.ReadInvoke, lock("S"), tok(2))
	b.done(13, "c2", r2, history.ReadOK, lock("S"), val("a"))
	w2 := b.invoke(14, "c2", history.WriteInvoke, lock("S"), tok(2), val(`["a","b"]`))
	b.done(15, "c2", w2, history.WriteOK, lock("S"))
	run := &Run{Scenario: "s", Backend: "redis", Expected: ExpectSafe, Workload: WorkloadSet, History: b.events,
		Final: FinalState{Sets: map[string][]string{"S": {"a"}}}}
	an := mustAnalyze(t, run)
	if an.Result.LostUpdates != 1 || an.Result.Verdict != VerdictFail {
		t.Fatalf("%+v; want 1 lost element, fail", an.Result)
	}
	if got := an.Updates.LostValues["S"]; len(got) != 1 || got[0] != "b" {
		t.Fatalf("lost elements %v; want [b]", got)
	}
	f := findings(an, FindingLostUpdate)
	if len(f) != 1 || !strings.Contains(f[0].Summary, `element "b"`) || !hasEvent(f[0].Events, "c2", history.WriteOK) {
		t.Fatalf("evidence %+v", f)
	}
	// The final read disagrees with the last acknowledged write.
	if lin(an.Result.Linearizable) != "false" {
		t.Fatalf("linearizable %s; want false", lin(an.Result.Linearizable))
	}

	run.Final.Sets["S"] = []string{"b", "a"}
	if an = mustAnalyze(t, run); an.Result.Verdict != VerdictPass || lin(an.Result.Linearizable) != "true" {
		t.Fatalf("with every element: %+v", an.Result)
	}
}

func TestReplicas(t *testing.T) {
	b := newBuilder()
	grant(b, "c1", "L", 0, 1, 1)
	run := &Run{Scenario: "leader-crash", Backend: "fencer", Expected: ExpectSafe, History: b.events,
		Replicas: []server.NodeState{
			{NodeID: "n1", Leader: true, AppliedIndex: 42, Hash: "aa", LastToken: 1},
			{NodeID: "n2", AppliedIndex: 42, Hash: "aa", LastToken: 1},
			{NodeID: "n3", AppliedIndex: 41, Hash: "bb", LastToken: 0},
		}}
	an := mustAnalyze(t, run)
	if an.Result.ReplicasAgree == nil || *an.Result.ReplicasAgree || an.Result.Verdict != VerdictFail {
		t.Fatalf("%+v; want replicas_agree false, fail", an.Result)
	}
	if len(an.Replicas.Differ) != 1 || an.Replicas.Differ[0] != "n3" {
		t.Fatalf("differ %v; want [n3]", an.Replicas.Differ)
	}
	f := findings(an, FindingReplicaDiffers)
	if len(f) != 1 || !strings.Contains(f[0].Summary, "applied index 41, not 42") || !strings.Contains(f[0].Summary, "n1, n2") {
		t.Fatalf("evidence %+v", f)
	}
	run.Replicas[2] = server.NodeState{NodeID: "n3", AppliedIndex: 42, Hash: "aa", LastToken: 1}
	if an = mustAnalyze(t, run); an.Result.ReplicasAgree == nil || !*an.Result.ReplicasAgree || an.Result.Verdict != VerdictPass {
		t.Fatalf("agreeing replicas: %+v", an.Result)
	}
}

func TestViolationNotReproduced(t *testing.T) {
	b, run := counterRun()
	grant(b, "c1", "L", 0, 1, 1)
	rel := b.invoke(2, "c1", history.ReleaseInvoke)
	b.done(3, "c1", rel, history.ReleaseOK)
	grant(b, "c2", "L", 4, 5, 2)
	run.History = b.events
	run.Expected = ExpectViolation
	run.Predicts = []Violation{ViolationBelievedOverlap}
	an := mustAnalyze(t, run)
	if an.Result.Verdict != VerdictFail || !strings.HasPrefix(an.Result.Reasons[0], "did not reproduce: expected believed-overlap") {
		t.Fatalf("%+v; want fail, did not reproduce", an.Result)
	}
	// A different violation does not count as a reproduction.
	grant(b, "c3", "L", 10, 11, 1)
	run.History = b.events
	an = mustAnalyze(t, run)
	if an.Result.Verdict != VerdictFail || !strings.Contains(an.Result.Reasons[0], "other violations: 1 token regression") {
		t.Fatalf("%+v", an.Result)
	}
}

// The clients saw a write rejected that the accept log does not show.
func TestLogMismatch(t *testing.T) {
	run := kleppmann(false)
	run.AcceptLog = entries(t, "get L 33 yes 33", "get L 34 yes 34", "put L 34 yes 34")
	an := mustAnalyze(t, run)
	f := findings(an, FindingLogMismatch)
	if an.Store.Mismatches != 1 || len(f) != 1 || !hasEvent(f[0].Events, "c1", history.WriteRejected) {
		t.Fatalf("mismatches %d, %+v", an.Store.Mismatches, f)
	}
	if an.Result.Verdict != VerdictPass || !strings.Contains(strings.Join(an.Result.Reasons, "\n"), "note: 1 disagreement") {
		t.Fatalf("%+v; a disagreement is a note", an.Result)
	}
}

func TestMalformedRuns(t *testing.T) {
	good := func() *Run { return kleppmann(false) }
	for _, tc := range []struct {
		name string
		edit func(r *Run)
		want string
	}{
		{"expectation", func(r *Run) { r.Expected = "maybe" }, `expected outcome "maybe"`},
		{"workload", func(r *Run) { r.Workload = "queue" }, `workload "queue"`},
		{"scope", func(r *Run) { r.TokenScope = "galaxy" }, `token scope "galaxy"`},
		{"prediction", func(r *Run) { r.Predicts = []Violation{"fire"} }, `predicted violation "fire"`},
		{"orphan completion", func(r *Run) {
			r.History = append(r.History, history.Event{Time: at(999), Process: "c9", Op: 4, Kind: history.WriteOK})
		}, "c9 op 4 write-ok"},
		{"mismatched completion", func(r *Run) {
			r.History = append(r.History,
				history.Event{Time: at(998), Process: "c9", Op: 1, Kind: history.ReadInvoke},
				history.Event{Time: at(999), Process: "c9", Op: 1, Kind: history.WriteOK})
		}, "completes a read-invoke"},
		{"counter value", func(r *Run) { r.History[3].Value = "one" }, `value "one" is not a counter`},
		{"valid_until", func(r *Run) { r.History[1].Attrs[AttrValidUntil] = "soon" }, `valid_until="soon"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := good()
			tc.edit(r)
			_, err := Analyze(r, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v; want one saying %q", err, tc.want)
			}
		})
	}
	if _, err := Analyze(good(), &Options{LinearizabilityTimeout: -time.Second}); err == nil {
		t.Fatal("negative timeout: no error")
	}
}

// A restarted worker numbers its operations from 1 again: the earlier,
// unfinished operation with the same number stays open.
func TestRestartedWorkerReusesOps(t *testing.T) {
	events := []history.Event{
		{Time: at(0), Process: "c1", Op: 1, Kind: history.WriteInvoke, Lock: "L", Token: 1, Value: "1"},
		{Time: at(5), Process: "c1", Op: 1, Kind: history.AcquireInvoke, Lock: "L"},
		{Time: at(6), Process: "c1", Op: 1, Kind: history.AcquireOK, Lock: "L", Token: 2},
	}
	ops, err := Operations(events)
	if err != nil {
		t.Fatal(err)
	}
	if len(ops) != 2 || ops[0].Outcome != OutcomeUnknown || ops[0].Complete != nil || ops[1].Outcome != OutcomeOK {
		t.Fatalf("ops %+v", ops)
	}
}

// The history given out of order is sorted, and the Run is not modified.
func TestAnalyzeDoesNotModifyRun(t *testing.T) {
	run := kleppmann(false)
	run.History[0], run.History[1] = run.History[1], run.History[0]
	first := run.History[0]
	an := mustAnalyze(t, run)
	if run.History[0].Kind != first.Kind || an.Run.History[0].Kind != history.AcquireInvoke {
		t.Fatal("Analyze changed the run's history, or did not sort its copy")
	}
	if an.Result.Verdict != VerdictPass {
		t.Fatalf("%+v", an.Result)
	}
}

// A search that cannot finish in time is unknown, never a failure.
func TestLinearizabilityTimeout(t *testing.T) {
	b, run := counterRun()
	// Many concurrent writes whose outcome is unknown, then reads that
	// each see a different one: the search has to try many orders.
	const n = 18
	for i := 0; i < n; i++ {
		c := "w" + itoa2(i)
		w := b.invoke(float64(i)*0.01, c, history.WriteInvoke, tok(1), val(itoa2(i+100)))
		b.done(1000, c, w, history.WriteUnknown)
	}
	for i := 0; i < n; i++ {
		c := "r" + itoa2(i)
		r := b.invoke(1, c, history.ReadInvoke, tok(1))
		b.done(900, c, r, history.ReadOK, val(itoa2(100+(i*7)%n)))
	}
	run.History = b.events
	run.StoreUnfenced = true
	an, err := Analyze(run, &Options{LinearizabilityTimeout: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	switch an.Linearizability.Store.Status {
	case CheckTimeout:
		if an.Result.Linearizable != nil || an.Result.Verdict != VerdictPass || !strings.Contains(an.Result.Observed, "linearizability unknown") {
			t.Fatalf("%+v; a timeout must be null and not fail the run", an.Result)
		}
	case CheckOK:
		t.Skip("the search finished within 1ms on this machine; the timeout path was not exercised")
	default:
		t.Fatalf("status %s", an.Linearizability.Store.Status)
	}
}

func itoa2(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa2(i/10) + digits[i%10:i%10+1]
}

func TestAcceptLogShapes(t *testing.T) {
	t.Run("truncated", func(t *testing.T) {
		run := kleppmann(false)
		// The ring dropped the two gets: the reads cannot be matched, and
		// that must not be called a disagreement.
		run.AcceptLog = entries(t, "get L 33 yes 33", "get L 34 yes 34", "put L 34 yes 34", "put L 33 no 34")[2:]
		an := mustAnalyze(t, run)
		if an.Store.Mismatches != 0 || an.Result.StaleRejected != 1 || an.Result.Verdict != VerdictPass {
			t.Fatalf("%+v, mismatches %d", an.Result, an.Store.Mismatches)
		}
		if n := findings(an, FindingNote); len(n) == 0 || !strings.Contains(n[0].Summary, "starts at seq 3") {
			t.Fatalf("notes %+v", n)
		}
	})
	t.Run("store restarted", func(t *testing.T) {
		run := kleppmann(false)
		log := entries(t, "get L 33 yes 33", "get L 34 yes 34", "put L 34 yes 34", "put L 33 no 34")
		log[2].Seq, log[3].Seq = 1, 2 // the log restarts after the gets
		run.AcceptLog = log
		an := mustAnalyze(t, run)
		if an.Store.Mismatches != 0 || an.Result.Verdict != VerdictPass {
			t.Fatalf("%+v, %+v", an.Result, an.Store.Findings)
		}
		if !strings.Contains(an.Store.Findings[0].Summary, "store restarted") {
			t.Fatalf("findings %+v", an.Store.Findings)
		}
	})
	t.Run("wrong refusal", func(t *testing.T) {
		run := kleppmann(false)
		run.AcceptLog = entries(t, "get L 33 yes 33", "get L 34 yes 34", "put L 34 yes 34", "put L 33 no 34", "put L 40 no 34")
		an := mustAnalyze(t, run)
		if an.Store.WrongRefusals != 1 || len(findings(an, FindingWrongRefusal)) != 1 {
			t.Fatalf("wrong refusals %d", an.Store.WrongRefusals)
		}
		// It is also a PUT decision that no client recorded.
		if an.Store.Mismatches != 1 {
			t.Fatalf("mismatches %d; want the unrecorded put", an.Store.Mismatches)
		}
	})
}

// Scenario 6: client 1's write is delayed in the network; the client gives
// up (write-unknown) and the write lands later. The accept log tells what
// became of it.
func TestDelayedWriteLandsStale(t *testing.T) {
	run := kleppmann(true)
	for i, e := range run.History {
		if e.Process == "c1" && e.Kind == history.WriteOK {
			run.History[i].Kind = history.WriteUnknown
		}
	}
	run.StoreUnfenced = true
	run.Expected = ExpectViolation
	run.AcceptLog = entries(t, "get L 33 yes 33", "get L 34 yes 34", "put L 34 yes 34", "put L 33 yes 33")
	an := mustAnalyze(t, run)
	if an.Store.Writes[1].Outcome != OutcomeUnknown || an.Store.Writes[1].Class != WriteStaleAccepted {
		t.Fatalf("c1's write %+v; want unknown to the client, stale-accepted by the log", an.Store.Writes[1])
	}
	// Only acknowledged writes count as lost; the final value 1 is
	// explained by either write.
	if an.Result.StaleAccepted != 1 || an.Store.Mismatches != 0 || an.Result.LostUpdates != 0 || an.Result.Verdict != VerdictPass {
		t.Fatalf("%+v", an.Result)
	}
}
