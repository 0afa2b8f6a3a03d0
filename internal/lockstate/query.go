package lockstate

import (
	"cmp"
	"maps"
	"slices"
	"strings"
	"time"
)

// LockInfo describes a lock that is held or in lock-delay. Free locks do
// not exist.
type LockInfo struct {
	// Name is the lock's name.
	Name string
	// Holder is the holding session; 0 while the lock is in lock-delay.
	Holder uint64
	// Token is the fencing token of the current grant; 0 while delayed.
	Token uint64
	// Seq is the holder's Acquire seq.
	Seq uint64
	// Since is when the lock was granted, or when its lock-delay began,
	// by the leader's clock. Display only.
	Since time.Time
	// LockDelay is the holder's lock-delay; while delayed, its length.
	LockDelay time.Duration
	// DelayGeneration is nonzero while the lock is in lock-delay: the
	// Generation a LiftDelay must carry.
	DelayGeneration uint64
	// Waiters is the FIFO queue, head first.
	Waiters []WaiterInfo
}

// WaiterInfo is one queued Acquire.
type WaiterInfo struct {
	// Session and Seq identify the Acquire.
	Session, Seq uint64
	// LockDelay is the lock-delay it asked for, in force once granted.
	LockDelay time.Duration
	// Since is when it queued, by the leader's clock.
	Since time.Time
}

// SessionInfo describes an open session.
type SessionInfo struct {
	// ID identifies the session in every request.
	ID uint64
	// TTL is the lifetime without a keep-alive the client asked for.
	TTL time.Duration
	// Opened is when the session was opened, by the leader's clock.
	Opened time.Time
	// AckedBelow is the highest AckedBelow the client has sent.
	AckedBelow uint64
	// Held and Waiting are the names of the locks the session holds and
	// waits for, sorted.
	Held, Waiting []string
	// Pending is the number of request results kept for retries.
	Pending int
}

// LastToken returns the last fencing token issued, 0 if none.
func (m *Machine) LastToken() uint64 { return m.lastToken }

// Lock returns the lock called name, and false if it is neither held nor in
// lock-delay.
func (m *Machine) Lock(name string) (LockInfo, bool) {
	l := m.locks[name]
	if l == nil {
		return LockInfo{}, false
	}
	return l.info(), true
}

// Locks returns every lock, sorted by name. It copies them all: O(locks).
func (m *Machine) Locks() []LockInfo {
	out := make([]LockInfo, 0, len(m.locks))
	for _, l := range m.sortedLocks() {
		out = append(out, l.info())
	}
	return out
}

// Session returns the open session id, and false if it is not open.
func (m *Machine) Session(id uint64) (SessionInfo, bool) {
	s := m.sessions[id]
	if s == nil {
		return SessionInfo{}, false
	}
	return s.info(), true
}

// Sessions returns every open session, sorted by ID. A new leader restarts
// each one's deadline at a full TTL.
func (m *Machine) Sessions() []SessionInfo {
	out := make([]SessionInfo, 0, len(m.sessions))
	for _, id := range slices.Sorted(maps.Keys(m.sessions)) {
		out = append(out, m.sessions[id].info())
	}
	return out
}

// PendingDelays returns a Delayed event for every lock in lock-delay, sorted
// by name: what a new leader feeds to its timers, restarting each delay at
// its full length, since the machine has no clock to tell how much is left.
func (m *Machine) PendingDelays() []Event {
	var out []Event
	for _, l := range m.locks {
		if l.gen != 0 {
			out = append(out, Event{Kind: EventDelayed, Name: l.name, Generation: l.gen, Delay: l.delay})
		}
	}
	slices.SortFunc(out, func(a, b Event) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// sortedLocks returns every lock, sorted by name. It sorts name and pointer
// pairs, as comparing through the pointers would miss the cache twice as
// often: this is most of the cost of a snapshot of many locks.
func (m *Machine) sortedLocks() []*lock {
	type entry struct {
		name string
		l    *lock
	}
	es := make([]entry, 0, len(m.locks))
	for name, l := range m.locks {
		es = append(es, entry{name, l})
	}
	slices.SortFunc(es, func(a, b entry) int { return strings.Compare(a.name, b.name) })
	ls := make([]*lock, len(es))
	for i, e := range es {
		ls[i] = e.l
	}
	return ls
}

func (l *lock) info() LockInfo {
	li := LockInfo{Name: l.name, Holder: l.holder, Token: l.token, Seq: l.seq, Since: fromUnixNanos(l.since), LockDelay: l.delay, DelayGeneration: l.gen}
	for _, w := range l.waiters {
		li.Waiters = append(li.Waiters, WaiterInfo{Session: w.session, Seq: w.seq, LockDelay: w.delay, Since: fromUnixNanos(w.since)})
	}
	return li
}

func (s *session) info() SessionInfo {
	si := SessionInfo{ID: s.id, TTL: s.ttl, Opened: fromUnixNanos(s.opened), AckedBelow: s.ackedBelow, Pending: len(s.replies)}
	for _, l := range s.heldLocks() {
		si.Held = append(si.Held, l.name)
	}
	for _, w := range s.waits {
		si.Waiting = append(si.Waiting, w.name)
	}
	slices.Sort(si.Waiting)
	return si
}

// SessionCount returns the number of open sessions.
func (m *Machine) SessionCount() int { return len(m.sessions) }

// EachSession calls fn with the ID and TTL of every open session, in no
// particular order. It copies nothing: what a new leader uses to restart
// every deadline, even with a million sessions.
func (m *Machine) EachSession(fn func(id uint64, ttl time.Duration)) {
	for id, s := range m.sessions {
		fn(id, s.ttl)
	}
}

// SessionHolds reports whether the session holds a lock with the token.
func (m *Machine) SessionHolds(id, token uint64) bool {
	s := m.sessions[id]
	if s == nil {
		return false
	}
	for l := s.held; l != nil; l = l.next {
		if l.token == token {
			return true
		}
	}
	return false
}

// Member returns the client API address of the node id, and false if none
// is recorded.
func (m *Machine) Member(id string) (string, bool) {
	a, ok := m.members[id]
	return a, ok
}
