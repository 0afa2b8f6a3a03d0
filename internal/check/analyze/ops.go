package analyze

import (
	"fmt"
	"sort"
	"strconv"

	"github.com/fencerlock/fencer/internal/history"
)

// KindLeaseExtended is a history kind this package adds to those of package
// history: a client's renewal succeeded and moved its conservative lease
// end to Attrs["valid_until"]. It stands alone (Op zero) and carries the
// Lock and Token of the lease. Without it, a holder's believed window ends
// at the valid_until of its acquire-ok.
const KindLeaseExtended history.Kind = "lease-extended"

// The Event.Attrs keys the checkers read.
const (
	// AttrValidUntil, on acquire-ok and lease-extended: the client's
	// conservative lease end, a history.Time in decimal nanoseconds.
	AttrValidUntil = "valid_until"
	// AttrSafeToken, on acquire-ok: "true" when the backend declares its
	// tokens safe for fencing. Shown in evidence; the checks do not depend
	// on it.
	AttrSafeToken = "safe_token"
	// AttrStatus, on read-fail and write-fail: the store's HTTP status.
	// "409" means the token was refused as stale.
	AttrStatus = "status"
	// AttrKey, on read and write events: the store key, when it is not the
	// event's Lock.
	AttrKey = "key"
	// AttrFault, on fault-start and fault-end: the fault's kind, e.g.
	// "kill", "partition", "clock-jump". "kind" is read when it is absent.
	AttrFault = "fault"
	// AttrTarget, on fault-start and fault-end: the process or link the
	// fault hits, e.g. "c1" or "n2".
	AttrTarget = "target"
)

// FaultKill is the AttrFault value of a kill -9: a fault-start with it and
// AttrTarget naming a client ends that client's held windows (a dead
// process holds nothing, whatever the lock service still thinks).
const FaultKill = "kill"

// OpType is the kind of a client operation.
type OpType string

// The operation types, from the Kind prefixes of package history.
const (
	OpAcquire OpType = "acquire"
	OpRelease OpType = "release"
	OpRead    OpType = "read"
	OpWrite   OpType = "write"
)

// Outcome is how an operation ended, as far as its client knows.
type Outcome string

// The outcomes.
const (
	// OutcomeOK: it took effect (acquire-ok, read-ok, write-ok,
	// release-ok).
	OutcomeOK Outcome = "ok"
	// OutcomeRejected: the store refused the token as stale
	// (write-rejected, or read-fail/write-fail with status 409).
	OutcomeRejected Outcome = "rejected"
	// OutcomeFail: it certainly did not take effect.
	OutcomeFail Outcome = "fail"
	// OutcomeUnknown: the client cannot tell (an -unknown completion, or
	// none at all because the worker died). It may take effect at any time
	// after its invocation, or never; checkers keep it open-ended.
	OutcomeUnknown Outcome = "unknown"
)

// Operation is an invocation paired with its completion.
type Operation struct {
	// Process and Op identify the operation, as in the history.
	Process string
	Op      uint64
	// Type is acquire, release, read or write.
	Type OpType
	// Lock is the lock's name; Key is the store key (AttrKey, else Lock).
	Lock, Key string
	// Token is the token granted (acquire) or sent (the others): the
	// completion's when it has one, else the invocation's.
	Token uint64
	// Value is the value written (write), or read (a read that is OK).
	Value string
	// Outcome is how it ended.
	Outcome Outcome
	// Invoke is the invocation event; Complete the completion, nil when
	// none was recorded.
	Invoke   history.Event
	Complete *history.Event
}

// Start is when the operation was invoked.
func (o *Operation) Start() history.Time { return o.Invoke.Time }

// End is when it completed; zero when no completion was recorded.
func (o *Operation) End() history.Time {
	if o.Complete == nil {
		return 0
	}
	return o.Complete.Time
}

// Events returns the operation's events: the invocation and, if recorded,
// the completion.
func (o *Operation) Events() []history.Event {
	if o.Complete == nil {
		return []history.Event{o.Invoke}
	}
	return []history.Event{o.Invoke, *o.Complete}
}

// kindInfo describes an operation kind of package history.
type kindInfo struct {
	typ     OpType
	invoke  bool
	outcome Outcome // for completions
}

// kindOf describes an operation kind of package history; ok is false for
// kinds that are not operations.
func kindOf(k history.Kind) (info kindInfo, ok bool) {
	switch k {
	case history.AcquireInvoke:
		return kindInfo{OpAcquire, true, ""}, true
	case history.AcquireOK:
		return kindInfo{OpAcquire, false, OutcomeOK}, true
	case history.AcquireFail:
		return kindInfo{OpAcquire, false, OutcomeFail}, true
	case history.AcquireUnknown:
		return kindInfo{OpAcquire, false, OutcomeUnknown}, true
	case history.ReleaseInvoke:
		return kindInfo{OpRelease, true, ""}, true
	case history.ReleaseOK:
		return kindInfo{OpRelease, false, OutcomeOK}, true
	case history.ReleaseFail:
		return kindInfo{OpRelease, false, OutcomeFail}, true
	case history.ReleaseUnknown:
		return kindInfo{OpRelease, false, OutcomeUnknown}, true
	case history.ReadInvoke:
		return kindInfo{OpRead, true, ""}, true
	case history.ReadOK:
		return kindInfo{OpRead, false, OutcomeOK}, true
	case history.ReadFail:
		return kindInfo{OpRead, false, OutcomeFail}, true
	case history.ReadUnknown:
		return kindInfo{OpRead, false, OutcomeUnknown}, true
	case history.WriteInvoke:
		return kindInfo{OpWrite, true, ""}, true
	case history.WriteOK:
		return kindInfo{OpWrite, false, OutcomeOK}, true
	case history.WriteRejected:
		return kindInfo{OpWrite, false, OutcomeRejected}, true
	case history.WriteFail:
		return kindInfo{OpWrite, false, OutcomeFail}, true
	case history.WriteUnknown:
		return kindInfo{OpWrite, false, OutcomeUnknown}, true
	}
	return kindInfo{}, false
}

// Operations pairs the invocations and completions of events (ordered by
// time, as history.Merge returns them) into operations, ordered by
// invocation. An invocation is paired with the next completion of the same
// Process and Op; an invocation without one has OutcomeUnknown. A second
// invocation with the same Process and Op while the first is still open
// (a worker that was restarted and numbers its operations from 1 again)
// leaves the first open-ended. Events that are not operations (faults,
// pauses, lease-lost, unknown kinds) are ignored.
//
// It fails on a completion without an invocation, or whose type differs
// from its invocation's: the history is then not one the checkers can
// trust.
func Operations(events []history.Event) ([]Operation, error) {
	type id struct {
		process string
		op      uint64
	}
	var ops []Operation
	open := map[id]int{} // index into ops
	for i := range events {
		e := &events[i]
		info, ok := kindOf(e.Kind)
		if !ok {
			continue
		}
		k := id{e.Process, e.Op}
		if info.invoke {
			ops = append(ops, Operation{
				Process: e.Process, Op: e.Op, Type: info.typ,
				Lock: e.Lock, Key: keyOf(e), Token: e.Token, Outcome: OutcomeUnknown, Invoke: *e,
			})
			if e.Op != 0 {
				open[k] = len(ops) - 1
			}
			if info.typ == OpWrite {
				ops[len(ops)-1].Value = e.Value
			}
			continue
		}
		j, ok := open[k]
		if !ok || e.Op == 0 {
			return nil, fmt.Errorf("analyze: history event %d (%s op %d %s at %v) completes no invocation: each completion needs an earlier %s-invoke with the same process and op",
				i, e.Process, e.Op, e.Kind, e.Time, info.typ)
		}
		o := &ops[j]
		if o.Type != info.typ {
			return nil, fmt.Errorf("analyze: history event %d (%s op %d %s at %v) completes a %s-invoke: an operation's completion must be of its own type",
				i, e.Process, e.Op, e.Kind, e.Time, o.Type)
		}
		delete(open, k)
		c := *e
		o.Complete = &c
		o.Outcome = info.outcome
		if e.Token != 0 {
			o.Token = e.Token
		}
		if o.Lock == "" {
			o.Lock = e.Lock
		}
		if o.Key == "" {
			o.Key = keyOf(e)
		}
		switch {
		case info.typ == OpRead && info.outcome == OutcomeOK:
			o.Value = e.Value
		case (info.typ == OpRead || info.typ == OpWrite) && info.outcome == OutcomeFail && e.Attrs[AttrStatus] == "409":
			o.Outcome = OutcomeRejected
		}
	}
	sort.SliceStable(ops, func(a, b int) bool { return ops[a].Invoke.Time < ops[b].Invoke.Time })
	return ops, nil
}

func keyOf(e *history.Event) string {
	if k := e.Attrs[AttrKey]; k != "" {
		return k
	}
	return e.Lock
}

// attrTime parses a history.Time attribute; ok is false when it is absent.
func attrTime(e *history.Event, key string) (history.Time, bool, error) {
	s, ok := e.Attrs[key]
	if !ok || s == "" {
		return 0, false, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("analyze: %s %s at %v: attribute %s=%q is not a history time (decimal nanoseconds of CLOCK_MONOTONIC)",
			e.Process, e.Kind, e.Time, key, s)
	}
	return history.Time(v), true, nil
}

// faultKind returns the kind of a fault event.
func faultKind(e *history.Event) string {
	if k := e.Attrs[AttrFault]; k != "" {
		return k
	}
	return e.Attrs["kind"]
}
