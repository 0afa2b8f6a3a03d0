package lockstate

import (
	"bytes"
	"fmt"
	"slices"
)

// checkInvariants returns the first broken invariant of m's internal state,
// or nil. Transcripts, the model test and the fuzzers run it after every
// entry.
func checkInvariants(m *Machine) error {
	tokens := map[uint64]string{}
	heldBy := map[uint64]int{} // session -> locks it holds
	for name, l := range m.locks {
		if msg := checkName(name); msg != "" {
			return fmt.Errorf("lock %q: %s", name, msg)
		}
		if l.name != name {
			return fmt.Errorf("lock %q: stored under %q", l.name, name)
		}
		if l.holder != 0 {
			s := m.sessions[l.holder]
			switch {
			case s == nil:
				return fmt.Errorf("lock %q: holder %d is not an open session", name, l.holder)
			case l.token == 0 || l.token > m.lastToken:
				return fmt.Errorf("lock %q: token %d is not in 1..%d", name, l.token, m.lastToken)
			case l.gen != 0:
				return fmt.Errorf("lock %q: held and delayed (gen %d) at once", name, l.gen)
			}
			if other, dup := tokens[l.token]; dup {
				return fmt.Errorf("locks %q and %q hold the same token %d", name, other, l.token)
			}
			tokens[l.token] = name
			heldBy[l.holder]++
		} else {
			if l.prev != nil || l.next != nil {
				return fmt.Errorf("lock %q: has no holder but is linked into a held list", name)
			}
			switch {
			case l.gen == 0:
				return fmt.Errorf("lock %q: kept while free and not delayed (%d waiters)", name, len(l.waiters))
			case l.gen > m.lastGen:
				return fmt.Errorf("lock %q: delay generation %d is above the last %d", name, l.gen, m.lastGen)
			case l.token != 0 || l.delay <= 0:
				return fmt.Errorf("lock %q: delayed with token %d and delay %v", name, l.token, l.delay)
			}
		}
		seen := map[uint64]bool{}
		for _, w := range l.waiters {
			s := m.sessions[w.session]
			switch {
			case s == nil:
				return fmt.Errorf("lock %q: waiter session %d is not open", name, w.session)
			case w.session == l.holder:
				return fmt.Errorf("lock %q: holder %d also waits for it", name, w.session)
			case seen[w.session]:
				return fmt.Errorf("lock %q: session %d waits twice", name, w.session)
			case !slices.Contains(s.waits, wait{name: name, seq: w.seq}):
				return fmt.Errorf("lock %q: session %d waits (seq %d) but does not list the wait", name, w.session, w.seq)
			}
			seen[w.session] = true
		}
	}
	for id, s := range m.sessions {
		if s.id != id || id == 0 {
			return fmt.Errorf("session %d: stored as %d, last session %d", s.id, id, m.lastSession)
		}
		n := 0
		var prev *lock
		for l := s.held; l != nil; prev, l = l, l.next {
			if m.locks[l.name] != l || l.holder != id || l.prev != prev {
				return fmt.Errorf("session %d: held list has %q, which it does not hold or is linked wrong", id, l.name)
			}
			if n++; n > len(m.locks) {
				return fmt.Errorf("session %d: held list has a cycle", id)
			}
		}
		if n != heldBy[id] {
			return fmt.Errorf("session %d: held list has %d locks, but it holds %d", id, n, heldBy[id])
		}
		delete(heldBy, id)
		for _, w := range s.waits {
			l := m.locks[w.name]
			if l == nil || !slices.Contains(l.waiters, waiterFor(l, id, w.seq)) {
				return fmt.Errorf("session %d: lists a wait for %q (seq %d) that is not queued", id, w.name, w.seq)
			}
		}
		if len(s.replies) > MaxPending {
			return fmt.Errorf("session %d: %d records, above %d", id, len(s.replies), MaxPending)
		}
		for i, r := range s.replies {
			if r.seq < s.ackedBelow || (i > 0 && r.seq <= s.replies[i-1].seq) {
				return fmt.Errorf("session %d: records out of order or below acked-below %d: seq %d", id, s.ackedBelow, r.seq)
			}
			if r.status == StatusQueued && !slices.Contains(s.waits, wait{name: r.name, seq: r.seq}) {
				return fmt.Errorf("session %d: record seq %d is queued for %q, but the session does not wait", id, r.seq, r.name)
			}
		}
	}
	if len(heldBy) > 0 {
		return fmt.Errorf("locks held by sessions that are not open: %v", heldBy)
	}
	return nil
}

func waiterFor(l *lock, session, seq uint64) waiter {
	for _, w := range l.waiters {
		if w.session == session && w.seq == seq {
			return w
		}
	}
	return waiter{session: session, seq: seq, delay: -1} // matches nothing
}

// checkRoundTrip snapshots m, restores it into a new Machine and checks
// that the copy has the same bytes. It returns the copy.
func checkRoundTrip(m *Machine) (*Machine, error) {
	snap := m.Snapshot()
	c := New()
	if err := c.Restore(bytes.NewReader(snap)); err != nil {
		return nil, fmt.Errorf("restore of a fresh snapshot: %v", err)
	}
	if !bytes.Equal(c.Snapshot(), snap) || c.Hash() != m.Hash() {
		return nil, fmt.Errorf("restored state differs from the original")
	}
	if err := checkInvariants(c); err != nil {
		return nil, fmt.Errorf("after restore: %v", err)
	}
	return c, nil
}
