package server

import (
	"sync"

	"github.com/fencerlock/fencer/internal/lockstate"
)

// waiters connects blocked Acquire calls on the leader to the log entries
// that end their wait. A call registers its session before it proposes, so
// no grant can slip between the proposal and the registration.
type waiters struct {
	mu sync.Mutex
	m  map[uint64]chan waitOutcome
}

// waitOutcome ends a wait: a grant, an abort, or the loss of leadership.
type waitOutcome struct {
	event       lockstate.Event
	lostLeading bool
}

func newWaiters() *waiters { return &waiters{m: make(map[uint64]chan waitOutcome)} }

// add registers a waiting call for session and returns its channel.
func (w *waiters) add(session uint64) chan waitOutcome {
	ch := make(chan waitOutcome, 1)
	w.mu.Lock()
	w.m[session] = ch
	w.mu.Unlock()
	return ch
}

// remove unregisters ch if it is still session's.
func (w *waiters) remove(session uint64, ch chan waitOutcome) {
	w.mu.Lock()
	if w.m[session] == ch {
		delete(w.m, session)
	}
	w.mu.Unlock()
}

// dispatch delivers grants and aborts. It runs on the FSM goroutine and
// never blocks.
func (w *waiters) dispatch(events []lockstate.Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.m) == 0 {
		return
	}
	for _, e := range events {
		if e.Kind != lockstate.EventGranted && e.Kind != lockstate.EventWaitAborted {
			continue
		}
		if ch, ok := w.m[e.Session]; ok {
			delete(w.m, e.Session)
			ch <- waitOutcome{event: e}
		}
	}
}

// failAll ends every wait because this node stopped leading; the callers
// answer with the new leader's address and their clients retry there.
func (w *waiters) failAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for s, ch := range w.m {
		delete(w.m, s)
		ch <- waitOutcome{lostLeading: true}
	}
}
