package analyze

import (
	"fmt"
	"sort"

	"github.com/fencerlock/fencer/internal/history"
)

// Window is one client's hold of one lock, from its acquire-ok.
type Window struct {
	// Lock, Process and Token identify the grant.
	Lock    string `json:"lock"`
	Process string `json:"process"`
	Token   uint64 `json:"token,omitempty"`
	// Start is the acquire-ok's time.
	Start history.Time `json:"start"`
	// ObservedEnd is when the client stopped acting as holder: its
	// release-invoke, its lease-lost, a kill fault on it, its next
	// acquire-invoke of the lock, or the end of the history.
	ObservedEnd history.Time `json:"observed_end"`
	// ObservedEndBy names which of those it was.
	ObservedEndBy string `json:"observed_end_by"`
	// BelievedEnd is when the client's own view said the lease ended: the
	// earliest of its last valid_until (acquire-ok or lease-extended) and
	// ObservedEnd. It equals Start when the lease was already over when
	// the grant arrived.
	BelievedEnd history.Time `json:"believed_end"`
	// BelievedEndBy names what ended it ("valid_until" or ObservedEndBy).
	BelievedEndBy string `json:"believed_end_by"`
	// Events are the acquire-ok and the event that ended the window, if
	// any.
	Events []history.Event `json:"events"`
}

// HolderReport is the result of the overlapping-holders check.
type HolderReport struct {
	// Windows are every client's windows, ordered by lock, then start.
	Windows []Window `json:"windows"`
	// Observed counts pairs of windows of different processes on one lock
	// whose observed spans intersect.
	Observed int `json:"observed"`
	// Believed counts such pairs whose believed spans intersect.
	Believed int `json:"believed"`
	// Findings has one entry per overlapping pair: FindingBelievedOverlap
	// when the believed spans intersect, else FindingObservedOverlap.
	Findings []Finding `json:"findings,omitempty"`
}

// checkHolders builds every holder's window and counts the overlaps.
func checkHolders(events []history.Event, tl timeline) (HolderReport, error) {
	type key struct{ process, lock string }
	type openWindow struct {
		w          Window
		validUntil history.Time // 0: none given
	}
	var rep HolderReport
	open := map[key]*openWindow{}
	closeWin := func(k key, at history.Time, by string, ev *history.Event) {
		o := open[k]
		delete(open, k)
		w := o.w
		w.ObservedEnd, w.ObservedEndBy = at, by
		w.BelievedEnd, w.BelievedEndBy = at, by
		if o.validUntil != 0 && o.validUntil < at {
			w.BelievedEnd, w.BelievedEndBy = max(o.validUntil, w.Start), AttrValidUntil
		}
		if ev != nil {
			w.Events = append(w.Events, *ev)
		}
		rep.Windows = append(rep.Windows, w)
	}
	// closeMatching ends the windows of process on lock, or on every lock
	// when lock is empty.
	closeMatching := func(process, lock string, e *history.Event, by string) {
		if lock != "" {
			if _, ok := open[key{process, lock}]; ok {
				closeWin(key{process, lock}, e.Time, by, e)
			}
			return
		}
		var ks []key
		for k := range open {
			if k.process == process {
				ks = append(ks, k)
			}
		}
		sort.Slice(ks, func(i, j int) bool { return ks[i].lock < ks[j].lock })
		for _, k := range ks {
			closeWin(k, e.Time, by, e)
		}
	}
	for i := range events {
		e := &events[i]
		switch e.Kind {
		case history.AcquireOK:
			k := key{e.Process, e.Lock}
			if _, ok := open[k]; ok {
				closeWin(k, e.Time, "next acquire", e)
			}
			vu, _, err := attrTime(e, AttrValidUntil)
			if err != nil {
				return HolderReport{}, err
			}
			open[k] = &openWindow{
				w:          Window{Lock: e.Lock, Process: e.Process, Token: e.Token, Start: e.Time, Events: []history.Event{*e}},
				validUntil: vu,
			}
		case KindLeaseExtended:
			vu, ok, err := attrTime(e, AttrValidUntil)
			if err != nil {
				return HolderReport{}, err
			}
			if o := open[key{e.Process, e.Lock}]; ok && o != nil && vu > o.validUntil {
				o.validUntil = vu
			}
		case history.AcquireInvoke:
			closeMatching(e.Process, e.Lock, e, "next acquire")
		case history.ReleaseInvoke:
			closeMatching(e.Process, e.Lock, e, "release")
		case history.LeaseLost:
			closeMatching(e.Process, e.Lock, e, "lease-lost")
		case history.FaultStart:
			if faultKind(e) == FaultKill && e.Attrs[AttrTarget] != "" {
				closeMatching(e.Attrs[AttrTarget], "", e, "killed")
			}
		}
	}
	var rest []key
	for k := range open {
		rest = append(rest, k)
	}
	sort.Slice(rest, func(i, j int) bool {
		if rest[i].lock != rest[j].lock {
			return rest[i].lock < rest[j].lock
		}
		return rest[i].process < rest[j].process
	})
	for _, k := range rest {
		closeWin(k, tl.end, "end of history", nil)
	}
	sort.SliceStable(rep.Windows, func(i, j int) bool {
		a, b := rep.Windows[i], rep.Windows[j]
		if a.Lock != b.Lock {
			return a.Lock < b.Lock
		}
		return a.Start < b.Start
	})

	// Windows are sorted by lock and start: for each window, only the
	// windows that start before it observably ends can intersect it, and
	// believed spans lie inside observed ones.
	ws := rep.Windows
	for i := range ws {
		a := &ws[i]
		for j := i + 1; j < len(ws) && ws[j].Lock == a.Lock && ws[j].Start < a.ObservedEnd; j++ {
			b := &ws[j]
			if b.Process == a.Process || !(b.Start < a.ObservedEnd && a.Start < b.ObservedEnd) {
				continue
			}
			rep.Observed++
			kind, from, to := FindingObservedOverlap, max(a.Start, b.Start), min(a.ObservedEnd, b.ObservedEnd)
			if b.Start < a.BelievedEnd && a.Start < b.BelievedEnd {
				rep.Believed++
				kind, to = FindingBelievedOverlap, min(a.BelievedEnd, b.BelievedEnd)
			}
			rep.Findings = append(rep.Findings, Finding{
				Kind: kind, Lock: a.Lock,
				Summary: fmt.Sprintf("%s and %s both held %s for %s from %s (%s)",
					describeWindow(a, tl), describeWindow(b, tl), a.Lock, dur(from, to), tl.ms(from), overlapWhy(kind)),
				Events: sortedEvents(append(append([]history.Event{}, a.Events...), b.Events...)...),
			})
		}
	}
	return rep, nil
}

func describeWindow(w *Window, tl timeline) string {
	tok := "no token"
	if w.Token != 0 {
		tok = fmt.Sprintf("token %d", w.Token)
	}
	return fmt.Sprintf("%s (%s, granted %s, believed until %s [%s], acted until %s [%s])",
		w.Process, tok, tl.ms(w.Start), tl.ms(w.BelievedEnd), w.BelievedEndBy, tl.ms(w.ObservedEnd), w.ObservedEndBy)
}

func overlapWhy(k FindingKind) string {
	if k == FindingBelievedOverlap {
		return "believed: the lock was granted while the previous holder was still entitled to it"
	}
	return "observed only: one holder's lease had ended by its own reckoning, but it had not noticed"
}
