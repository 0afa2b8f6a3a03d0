package analyze

import (
	"fmt"
	"sort"

	"github.com/fencerlock/fencer/internal/history"
)

// SpanKind says what a [Span] is.
type SpanKind string

// The span kinds.
const (
	// SpanPause: a process was stopped (SIGSTOP) from a pause to its
	// resume event.
	SpanPause SpanKind = "pause"
	// SpanFault: an injected fault, from fault-start to fault-end.
	SpanFault SpanKind = "fault"
)

// Span is a stretch of time with a fault or a pause, for the timeline.
type Span struct {
	// Kind is pause or fault.
	Kind SpanKind `json:"kind"`
	// Process is the paused process, or the fault's target (may be empty).
	Process string `json:"process,omitempty"`
	// Label is "pause" or the fault's kind, with its target.
	Label string `json:"label"`
	// Start and End bound it. End is the end of the history when no
	// resume or fault-end was recorded; Open says so.
	Start history.Time `json:"start"`
	// End: see Start.
	End history.Time `json:"end"`
	// Open: see Start.
	Open bool `json:"open,omitempty"`
	// Events are the start event and, if any, the end event.
	Events []history.Event `json:"events"`
}

// Spans pairs pause with resume events (by Process) and fault-start with
// fault-end events (by Op when both have one, else by fault kind and
// target), and returns the spans ordered by start. end is the end of the
// history, where unpaired spans end.
func Spans(events []history.Event, end history.Time) []Span {
	type faultID struct {
		op           uint64
		kind, target string
	}
	var spans []Span
	paused := map[string][]int{} // process → open pause spans
	faults := map[faultID][]int{}
	fid := func(e *history.Event) faultID {
		if e.Op != 0 {
			return faultID{op: e.Op}
		}
		return faultID{kind: faultKind(e), target: e.Attrs[AttrTarget]}
	}
	for i := range events {
		e := &events[i]
		switch e.Kind {
		case history.Pause:
			spans = append(spans, Span{Kind: SpanPause, Process: e.Process, Label: "pause " + e.Process,
				Start: e.Time, End: end, Open: true, Events: []history.Event{*e}})
			paused[e.Process] = append(paused[e.Process], len(spans)-1)
		case history.Resume:
			if q := paused[e.Process]; len(q) > 0 {
				s := &spans[q[0]]
				s.End, s.Open = e.Time, false
				s.Events = append(s.Events, *e)
				paused[e.Process] = q[1:]
			}
		case history.FaultStart:
			target := e.Attrs[AttrTarget]
			label := faultKind(e)
			if label == "" {
				label = "fault"
			}
			if target != "" {
				label = fmt.Sprintf("%s %s", label, target)
			}
			spans = append(spans, Span{Kind: SpanFault, Process: target, Label: label,
				Start: e.Time, End: end, Open: true, Events: []history.Event{*e}})
			id := fid(e)
			faults[id] = append(faults[id], len(spans)-1)
		case history.FaultEnd:
			id := fid(e)
			if q := faults[id]; len(q) > 0 {
				s := &spans[q[0]]
				s.End, s.Open = e.Time, false
				s.Events = append(s.Events, *e)
				faults[id] = q[1:]
			}
		}
	}
	sort.SliceStable(spans, func(i, j int) bool { return spans[i].Start < spans[j].Start })
	return spans
}
