package analyze

import (
	"fmt"
	"sort"

	"github.com/fencerlock/fencer/internal/history"
	"github.com/fencerlock/fencer/internal/store"
)

// FindingKind classifies a [Finding].
type FindingKind string

// The finding kinds. Those marked "violation" break safety; the others are
// shown as evidence or as notes.
const (
	// FindingObservedOverlap: two clients' observed windows intersect
	// (e.g. a paused holder that had not noticed its lease end). Not a
	// violation by itself: fencing is what protects.
	FindingObservedOverlap FindingKind = "observed-overlap"
	// FindingBelievedOverlap: two clients' believed windows intersect: the
	// lock was granted while the previous holder was still entitled to it.
	FindingBelievedOverlap FindingKind = "believed-overlap"
	// FindingLostUpdate (violation): an acknowledged write is not in the
	// final state.
	FindingLostUpdate FindingKind = "lost-update"
	// FindingTokenDuplicate (violation): one token was granted twice.
	FindingTokenDuplicate FindingKind = "token-duplicate"
	// FindingTokenRegression (violation): a grant invoked after another
	// grant completed got a token not above it.
	FindingTokenRegression FindingKind = "token-regression"
	// FindingStaleAccepted (violation): the store accepted a request whose
	// token was below one it had already accepted for the key.
	FindingStaleAccepted FindingKind = "stale-accepted"
	// FindingStaleRejected: the store refused a stale token, as fencing
	// should. Evidence that fencing was exercised.
	FindingStaleRejected FindingKind = "stale-rejected"
	// FindingWrongRefusal: a fenced store refused a token that was not
	// below any token it had accepted for the key.
	FindingWrongRefusal FindingKind = "wrong-refusal"
	// FindingLogMismatch: the client-side view and the store's accept log
	// disagree (a client saw a write rejected that the log does not show,
	// or the reverse).
	FindingLogMismatch FindingKind = "log-mismatch"
	// FindingNotLinearizable (violation): porcupine found no linearization
	// of a partition.
	FindingNotLinearizable FindingKind = "not-linearizable"
	// FindingReplicaDiffers (violation when there are replicas): a
	// replica's applied index or state hash differs from the others'.
	FindingReplicaDiffers FindingKind = "replica-differs"
	// FindingNote: something the reader should know, e.g. a check that
	// could not run.
	FindingNote FindingKind = "note"
)

// Finding is one concrete observation with its evidence.
type Finding struct {
	// Kind classifies it.
	Kind FindingKind `json:"kind"`
	// Lock is the lock or store key it concerns, if any.
	Lock string `json:"lock,omitempty"`
	// Summary says what happened in one line, with times in ms from the
	// start of the history.
	Summary string `json:"summary"`
	// Events are the history events involved, in time order.
	Events []history.Event `json:"events,omitempty"`
	// Entries are the accept-log entries involved, in store order.
	Entries []store.Entry `json:"entries,omitempty"`
}

// timeline converts history times into ms from the start of the history
// for summaries.
type timeline struct {
	origin history.Time
	end    history.Time
}

// ms formats t as milliseconds from the origin.
func (tl timeline) ms(t history.Time) string {
	return fmt.Sprintf("%.1fms", float64(t-tl.origin)/1e6)
}

// dur formats the duration between two times in ms.
func dur(from, to history.Time) string {
	return fmt.Sprintf("%.1fms", float64(to-from)/1e6)
}

// sortedEvents returns the events ordered by time, without duplicates of
// one event (same process, op, kind and time).
func sortedEvents(evs ...history.Event) []history.Event {
	type id struct {
		t    history.Time
		p    string
		op   uint64
		kind history.Kind
	}
	seen := map[id]bool{}
	out := make([]history.Event, 0, len(evs))
	for _, e := range evs {
		k := id{e.Time, e.Process, e.Op, e.Kind}
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, e)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time < out[j].Time })
	return out
}
