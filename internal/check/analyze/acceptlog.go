package analyze

import (
	"fmt"
	"sort"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/internal/history"
	"github.com/fencerlock/fencer/internal/store"
)

// WriteClass is what became of one client write, combining the client's
// view with the store's accept log.
type WriteClass string

// The write classes, as the timeline colours them.
const (
	// WriteAccepted: the store accepted it and its token was current.
	WriteAccepted WriteClass = "accepted"
	// WriteStaleAccepted: the store accepted it although a higher token
	// had already been accepted for the key.
	WriteStaleAccepted WriteClass = "stale-accepted"
	// WriteRejected: the store refused its token as stale.
	WriteRejected WriteClass = "rejected"
	// WriteFailed: it certainly did not reach the store's decision.
	WriteFailed WriteClass = "failed"
	// WriteUnknown: its fate is unknown.
	WriteUnknown WriteClass = "unknown"
)

// Write is one client write and what became of it.
type Write struct {
	// Process is the client that wrote.
	Process string `json:"process"`
	// Lock is the lock it held (the event's Lock); Key the store key.
	Lock string `json:"lock"`
	Key  string `json:"key"`
	// Token is the token sent with the write.
	Token uint64 `json:"token"`
	// Value is the value written.
	Value string `json:"value"`
	// Invoke and Complete are the write's times; Complete is zero when no
	// completion was recorded.
	Invoke history.Time `json:"invoke"`
	// Complete: see Invoke.
	Complete history.Time `json:"complete,omitempty"`
	// Outcome is the client's view.
	Outcome Outcome `json:"outcome"`
	// Class combines the client's view with the accept log's decision.
	Class WriteClass `json:"class"`
}

// StoreReport is the result of the store check.
type StoreReport struct {
	// FromLog says the counts come from the accept log. When the run has
	// no accept log they come from the client-side view: rejections as
	// the clients saw them, and stale acceptances inferred from an OK
	// request with a lower token invoked after one with a higher token
	// had completed on the same key.
	FromLog bool `json:"from_log"`
	// Entries is the number of accept-log entries read.
	Entries int `json:"entries"`
	// StaleAccepted counts requests (PUT or GET) accepted although a
	// higher token had already been accepted for the key: the accepted
	// tokens of the key went backwards in store order.
	StaleAccepted int `json:"stale_accepted"`
	// StaleRejected counts requests refused as stale.
	StaleRejected int `json:"stale_rejected"`
	// WrongRefusals counts requests a fenced store refused although their
	// token was not below the key's floor.
	WrongRefusals int `json:"wrong_refusals"`
	// Mismatches counts disagreements between the clients' view and the
	// accept log.
	Mismatches int `json:"mismatches"`
	// Writes lists every client write with its class, in invocation order.
	Writes []Write `json:"writes,omitempty"`
	// Findings has the evidence: FindingStaleAccepted, FindingStaleRejected,
	// FindingWrongRefusal, FindingLogMismatch and notes.
	Findings []Finding `json:"findings,omitempty"`
}

// logKey groups the accept-log entries and client requests that must
// correspond.
type logKey struct {
	op    string // "put" or "get"
	key   string
	token uint64
}

// logDecision is an accept-log entry with what the check learned of it.
type logDecision struct {
	entry store.Entry
	stale bool        // accepted below a higher accepted token
	above store.Entry // the entry that accepted the higher token (when stale or refused)
	used  bool        // matched to a client request
}

func checkStore(run *Run, ops []Operation, tl timeline) StoreReport {
	if len(run.AcceptLog) == 0 {
		return checkStoreClientSide(run, ops, tl)
	}
	rep := StoreReport{FromLog: true, Entries: len(run.AcceptLog)}
	decisions := make([]logDecision, len(run.AcceptLog))
	byKey := map[logKey][]int{} // indexes into decisions, store order
	type highest struct {
		token fencer.Token
		entry store.Entry
		set   bool
	}
	top := map[string]*highest{}
	complete := true // the log starts at seq 1 and has no gaps
	var prevSeq uint64
	for i, e := range run.AcceptLog {
		switch {
		case i == 0 && e.Seq > 1:
			complete = false
			rep.Findings = append(rep.Findings, Finding{Kind: FindingNote, Lock: e.Key,
				Summary: fmt.Sprintf("the accept log starts at seq %d, not 1 (older entries were dropped): the client/store agreement was not checked", e.Seq)})
		case i > 0 && e.Seq > prevSeq+1:
			complete = false
			rep.Findings = append(rep.Findings, Finding{Kind: FindingNote, Lock: e.Key,
				Summary: fmt.Sprintf("the accept log skips from seq %d to %d (entries dropped): the client/store agreement was not checked", prevSeq, e.Seq)})
		case i > 0 && e.Seq <= prevSeq:
			rep.Findings = append(rep.Findings, Finding{Kind: FindingNote, Lock: e.Key,
				Summary: fmt.Sprintf("the accept log restarts at seq %d after %d: the store restarted", e.Seq, prevSeq)})
		}
		prevSeq = e.Seq
		d := logDecision{entry: e}
		h := top[e.Key]
		if h == nil {
			h = &highest{}
			top[e.Key] = h
		}
		if e.Accepted {
			if h.set && e.Token < h.token {
				d.stale, d.above = true, h.entry
				rep.StaleAccepted++
				why := "the store ran without fencing"
				if !run.StoreUnfenced {
					why = "although the store checks tokens: a store bug or a store that forgot its floor"
				}
				rep.Findings = append(rep.Findings, Finding{Kind: FindingStaleAccepted, Lock: e.Key,
					Summary: fmt.Sprintf("the store accepted %s of %s with token %d (seq %d) after accepting token %d (seq %d): %s",
						e.Op, e.Key, e.Token, e.Seq, h.token, h.entry.Seq, why),
					Entries: []store.Entry{h.entry, e}})
			} else {
				h.token, h.entry, h.set = e.Token, e, true
			}
		} else {
			rep.StaleRejected++
			d.above = h.entry
			switch {
			case e.Token >= e.Floor:
				rep.WrongRefusals++
				rep.Findings = append(rep.Findings, Finding{Kind: FindingWrongRefusal, Lock: e.Key,
					Summary: fmt.Sprintf("the store refused %s of %s with token %d (seq %d, floor %d) although no higher token had been accepted for it",
						e.Op, e.Key, e.Token, e.Seq, e.Floor),
					Entries: []store.Entry{e}})
			default:
				f := Finding{Kind: FindingStaleRejected, Lock: e.Key,
					Summary: fmt.Sprintf("the store refused %s of %s with stale token %d (seq %d): floor %d", e.Op, e.Key, e.Token, e.Seq, e.Floor)}
				if h.set {
					f.Entries = []store.Entry{h.entry, e}
				} else {
					f.Entries = []store.Entry{e}
				}
				rep.Findings = append(rep.Findings, f)
			}
		}
		decisions[i] = d
		k := logKey{e.Op, e.Key, uint64(e.Token)}
		byKey[k] = append(byKey[k], i)
	}

	// Match the clients' requests to the log's decisions with the same op,
	// key and token, in order: OK and rejected requests first (they must
	// have a decision of their kind), then the uncertain ones take what is
	// left. Extra GET decisions are the harness's own reads; extra PUT
	// decisions mean a write nobody recorded as possibly applied.
	take := func(k logKey, accepted bool) *logDecision {
		for _, i := range byKey[k] {
			d := &decisions[i]
			if !d.used && d.entry.Accepted == accepted {
				d.used = true
				return d
			}
		}
		return nil
	}
	writeIdx := map[*Operation]int{}
	for i := range ops {
		o := &ops[i]
		if o.Type == OpWrite {
			writeIdx[o] = len(rep.Writes)
			rep.Writes = append(rep.Writes, newWrite(o))
		}
	}
	var uncertain []*Operation
	for i := range ops {
		o := &ops[i]
		if o.Type != OpRead && o.Type != OpWrite {
			continue
		}
		k := logKey{"get", o.Key, o.Token}
		if o.Type == OpWrite {
			k.op = "put"
		}
		switch o.Outcome {
		case OutcomeOK, OutcomeRejected:
			d := take(k, o.Outcome == OutcomeOK)
			if d == nil {
				if complete {
					rep.Mismatches++
					rep.Findings = append(rep.Findings, Finding{Kind: FindingLogMismatch, Lock: o.Key,
						Summary: fmt.Sprintf("%s's %s of %s with token %d at %s was %s, but the accept log has no such decision left",
							o.Process, o.Type, o.Key, o.Token, tl.ms(o.Start()), clientSaw(o.Outcome)),
						Events: o.Events()})
				}
				continue
			}
			if w, ok := writeIdx[o]; ok && d.stale {
				rep.Writes[w].Class = WriteStaleAccepted
			}
		case OutcomeUnknown:
			if o.Type == OpWrite {
				uncertain = append(uncertain, o)
			}
		}
	}
	for _, o := range uncertain {
		k := logKey{"put", o.Key, o.Token}
		for _, i := range byKey[k] {
			d := &decisions[i]
			if d.used {
				continue
			}
			d.used = true
			switch {
			case d.stale:
				rep.Writes[writeIdx[o]].Class = WriteStaleAccepted
			case d.entry.Accepted:
				rep.Writes[writeIdx[o]].Class = WriteAccepted
			default:
				rep.Writes[writeIdx[o]].Class = WriteRejected
			}
			break
		}
	}
	if complete {
		var extra []store.Entry
		for _, d := range decisions {
			if !d.used && d.entry.Op == "put" {
				extra = append(extra, d.entry)
			}
		}
		if len(extra) > 0 {
			rep.Mismatches += len(extra)
			rep.Findings = append(rep.Findings, Finding{Kind: FindingLogMismatch, Lock: extra[0].Key,
				Summary: fmt.Sprintf("the accept log has %d PUT decision(s) that match no write the clients recorded as OK, rejected or uncertain (first: %s with token %d, seq %d)",
					len(extra), extra[0].Key, extra[0].Token, extra[0].Seq),
				Entries: extra})
		}
	}
	return rep
}

func clientSaw(o Outcome) string {
	if o == OutcomeRejected {
		return "rejected as stale"
	}
	return "accepted"
}

func newWrite(o *Operation) Write {
	w := Write{Process: o.Process, Lock: o.Lock, Key: o.Key, Token: o.Token, Value: o.Value,
		Invoke: o.Start(), Complete: o.End(), Outcome: o.Outcome}
	switch o.Outcome {
	case OutcomeOK:
		w.Class = WriteAccepted
	case OutcomeRejected:
		w.Class = WriteRejected
	case OutcomeFail:
		w.Class = WriteFailed
	default:
		w.Class = WriteUnknown
	}
	return w
}

// checkStoreClientSide counts from the clients' view when there is no
// accept log.
func checkStoreClientSide(run *Run, ops []Operation, tl timeline) StoreReport {
	var rep StoreReport
	var okOps []*Operation
	seen := false
	for i := range ops {
		o := &ops[i]
		if o.Type != OpRead && o.Type != OpWrite {
			continue
		}
		seen = true
		if o.Type == OpWrite {
			rep.Writes = append(rep.Writes, newWrite(o))
		}
		switch o.Outcome {
		case OutcomeRejected:
			rep.StaleRejected++
			rep.Findings = append(rep.Findings, Finding{Kind: FindingStaleRejected, Lock: o.Key,
				Summary: fmt.Sprintf("the store refused %s's %s of %s with stale token %d at %s", o.Process, o.Type, o.Key, o.Token, tl.ms(o.End())),
				Events:  o.Events()})
		case OutcomeOK:
			okOps = append(okOps, o)
		}
	}
	if !seen {
		return rep
	}
	rep.Findings = append(rep.Findings, Finding{Kind: FindingNote,
		Summary: "no accept log: stale requests counted from the clients' view"})

	// An OK request whose token is below that of an OK request on the same
	// key that completed before it was invoked was accepted stale. Per key,
	// sweep the requests in invocation order, keeping the highest token of
	// those completed strictly before.
	type keyOps struct{ byStart, byEnd []*Operation }
	perKey := map[string]*keyOps{}
	for _, o := range okOps { // invocation order
		k := perKey[o.Key]
		if k == nil {
			k = &keyOps{}
			perKey[o.Key] = k
		}
		k.byStart = append(k.byStart, o)
		k.byEnd = append(k.byEnd, o)
	}
	stale := map[*Operation]*Operation{}
	for _, k := range perKey {
		sort.SliceStable(k.byEnd, func(i, j int) bool { return k.byEnd[i].End() < k.byEnd[j].End() })
		var top *Operation
		next := 0
		for _, o := range k.byStart {
			for next < len(k.byEnd) && k.byEnd[next].End() < o.Start() {
				if x := k.byEnd[next]; top == nil || x.Token > top.Token {
					top = x
				}
				next++
			}
			if top != nil && top.Token > o.Token {
				stale[o] = top
			}
		}
	}
	wi := 0
	for i := range ops {
		o := &ops[i]
		if o.Type == OpWrite {
			if _, ok := stale[o]; ok {
				rep.Writes[wi].Class = WriteStaleAccepted
			}
			wi++
		}
		top, ok := stale[o]
		if !ok {
			continue
		}
		rep.StaleAccepted++
		why := "the store ran without fencing"
		if !run.StoreUnfenced {
			why = "although the store checks tokens"
		}
		rep.Findings = append(rep.Findings, Finding{Kind: FindingStaleAccepted, Lock: o.Key,
			Summary: fmt.Sprintf("the store accepted %s's %s of %s with token %d at %s after %s's %s with token %d had completed at %s: %s",
				o.Process, o.Type, o.Key, o.Token, tl.ms(o.End()), top.Process, top.Type, top.Token, tl.ms(top.End()), why),
			Events: sortedEvents(append(top.Events(), o.Events()...)...)})
	}
	return rep
}
