package lockstate

import (
	"fmt"
	"strings"
	"time"
)

// Result is what Apply tells the proposer of an entry. Every replica computes
// the same Result for the same entry.
type Result struct {
	// Status is the outcome. Never zero.
	Status Status
	// Code says why, when Status is StatusFailed; CodeNone otherwise.
	Code Code
	// Message explains a Failed, Locked or Noop result (and a Cancel that
	// came too late) for a person: what was wrong and what is accepted.
	// Empty otherwise. Match on Status and Code, never on Message.
	Message string
	// Token is the fencing token when Status is StatusGranted.
	Token uint64
	// Session is the new session's ID, for OpenSession.
	Session uint64
	// Reason says why a wait ended, when Status is StatusAborted.
	Reason AbortReason
	// Events are what the entry did to other requests, in a fixed order.
	// A retry answered from the record has none: they were emitted when
	// the request first applied.
	Events []Event
}

// Status is the outcome of a command.
type Status uint8

const (
	// StatusOK: the command took effect.
	StatusOK Status = 1 + iota
	// StatusGranted: the session holds the lock with Result.Token.
	StatusGranted
	// StatusQueued: the session waits in the lock's FIFO queue; a Granted
	// or WaitAborted event ends the wait.
	StatusQueued
	// StatusLocked: a try-acquire found the lock held or in lock-delay.
	StatusLocked
	// StatusAborted: a retried Acquire whose wait was cancelled.
	StatusAborted
	// StatusNoop: nothing to do (an ExpireSession of a gone session, a
	// stale LiftDelay, a Cancel with no wait). Not an error.
	StatusNoop
	// StatusFailed: the command was refused and changed nothing except
	// the request record; Result.Code says why.
	StatusFailed
)

// Code says why a command failed.
type Code uint8

const (
	// CodeNone is the Code of every result that is not Failed.
	CodeNone Code = iota
	// CodeMalformed: the entry could not be decoded.
	CodeMalformed
	// CodeInvalidArgument: a field is out of range (name, TTL,
	// lock-delay, AckedBelow above Seq).
	CodeInvalidArgument
	// CodeUnknownSession: the session is not open: never opened, closed
	// or expired. The client must open a new one.
	CodeUnknownSession
	// CodeStaleRequest: Seq is below the session's AckedBelow, so the
	// client already has the answer; this is a late duplicate.
	CodeStaleRequest
	// CodeSeqReused: Seq was used for a different request.
	CodeSeqReused
	// CodeTooManyPending: the session has MaxPending requests whose
	// responses the client has not acknowledged.
	CodeTooManyPending
	// CodeNotHolder: Release by a session that does not hold the lock
	// with that token.
	CodeNotHolder
	// CodeAlreadyHeld: Acquire of a lock the session holds. Locks are
	// not re-entrant.
	CodeAlreadyHeld
	// CodeAlreadyQueued: Acquire of a lock the session already waits for
	// under another Seq.
	CodeAlreadyQueued
)

// AbortReason says why a wait ended without a grant.
type AbortReason uint8

const (
	// ReasonNone is the Reason of results and events that are no abort.
	ReasonNone AbortReason = iota
	// ReasonCanceled: the session sent Cancel.
	ReasonCanceled
	// ReasonSessionClosed: the waiting session was closed.
	ReasonSessionClosed
	// ReasonSessionExpired: the waiting session expired.
	ReasonSessionExpired
)

// Event is a consequence of an entry for a request other than its own, or
// for the leader's timers. Kind says which fields are set.
type Event struct {
	Kind EventKind
	// Session and Seq identify the Acquire concerned (Granted, WaitAborted).
	Session, Seq uint64
	// Name is the lock.
	Name string
	// Token is the fencing token of a Granted event.
	Token uint64
	// Reason is why a WaitAborted wait ended.
	Reason AbortReason
	// Generation and Delay belong to a Delayed event: propose
	// LiftDelay{Name, Generation} after Delay.
	Generation uint64
	Delay      time.Duration
}

// EventKind says what an Event reports.
type EventKind uint8

const (
	// EventGranted: Session's Acquire Seq now holds Name with Token; the
	// leader answers that Acquire if it is waiting on this node. Every
	// grant emits one, immediate grants included.
	EventGranted EventKind = 1 + iota
	// EventWaitAborted: Session's queued Acquire Seq for Name ended
	// without a grant, for Reason.
	EventWaitAborted
	// EventDelayed: Name went into lock-delay; the leader proposes
	// LiftDelay{Name, Generation} after Delay.
	EventDelayed
)

var statusNames = [...]string{StatusOK: "ok", StatusGranted: "granted", StatusQueued: "queued", StatusLocked: "locked", StatusAborted: "aborted", StatusNoop: "noop", StatusFailed: "failed"}

var codeNames = [...]string{CodeNone: "None", CodeMalformed: "Malformed", CodeInvalidArgument: "InvalidArgument", CodeUnknownSession: "UnknownSession", CodeStaleRequest: "StaleRequest", CodeSeqReused: "SeqReused", CodeTooManyPending: "TooManyPending", CodeNotHolder: "NotHolder", CodeAlreadyHeld: "AlreadyHeld", CodeAlreadyQueued: "AlreadyQueued"}

var reasonNames = [...]string{ReasonNone: "none", ReasonCanceled: "canceled", ReasonSessionClosed: "session-closed", ReasonSessionExpired: "session-expired"}

var kindNames = [...]string{EventGranted: "granted", EventWaitAborted: "wait-aborted", EventDelayed: "delayed"}

func enumString[T ~uint8](names []string, v T, typ string) string {
	if int(v) < len(names) && names[v] != "" {
		return names[v]
	}
	return fmt.Sprintf("%s(%d)", typ, uint8(v))
}

// String returns the status in lower case, as in "granted".
func (s Status) String() string { return enumString(statusNames[:], s, "status") }

// String returns the code's name without the prefix, as in "NotHolder".
func (c Code) String() string { return enumString(codeNames[:], c, "code") }

// String returns the reason in kebab case, as in "session-expired".
func (r AbortReason) String() string { return enumString(reasonNames[:], r, "reason") }

// String returns the kind in kebab case, as in "wait-aborted".
func (k EventKind) String() string { return enumString(kindNames[:], k, "event") }

// String formats r on one line, events not included: "granted token=7",
// "failed NotHolder: ...", "ok session=3".
func (r Result) String() string {
	var b strings.Builder
	b.WriteString(r.Status.String())
	if r.Code != CodeNone {
		b.WriteString(" " + r.Code.String())
	}
	if r.Token != 0 {
		fmt.Fprintf(&b, " token=%d", r.Token)
	}
	if r.Session != 0 {
		fmt.Fprintf(&b, " session=%d", r.Session)
	}
	if r.Reason != ReasonNone {
		fmt.Fprintf(&b, " reason=%s", r.Reason)
	}
	if r.Message != "" {
		b.WriteString(": " + r.Message)
	}
	return b.String()
}

// String formats e on one line, as in `granted s=2 seq=5 name="a" token=9`.
func (e Event) String() string {
	switch e.Kind {
	case EventGranted:
		return fmt.Sprintf("granted s=%d seq=%d name=%q token=%d", e.Session, e.Seq, e.Name, e.Token)
	case EventWaitAborted:
		return fmt.Sprintf("wait-aborted s=%d seq=%d name=%q reason=%s", e.Session, e.Seq, e.Name, e.Reason)
	case EventDelayed:
		return fmt.Sprintf("delayed name=%q gen=%d delay=%s", e.Name, e.Generation, e.Delay)
	}
	type plain Event // without the String method, which would recurse
	return fmt.Sprintf("%+v", plain(e))
}

func failed(code Code, format string, args ...any) Result {
	return Result{Status: StatusFailed, Code: code, Message: fmt.Sprintf(format, args...)}
}
