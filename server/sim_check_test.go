package server

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fencerlock/fencer/internal/lockstate"
)

// This file is the simulation's history and its checkers.

// Kinds of violations. Each is one of the invariants in sim_test.go.
const (
	vOverlap    = "overlap"      // (1) two clients believed they held one lock at once
	vEarly      = "early-expiry" // (1) the server expired a session its client still believed valid
	vToken      = "token"        // (2) a token granted twice, or tokens out of order
	vConverge   = "converge"     // (3) replicas differ at the end
	vDiverge    = "diverge"      // (3) two replicas had different states at one applied index
	vLeader     = "leader"       // (4) two leaders in a term, or a grant by a node that did not lead
	vLockDelay  = "lock-delay"   // a lock was granted before the lock-delay of an expired holder passed
	vRead       = "read"         // a linearizable Status read after a grant did not show it
	vStuck      = "stuck-leader" // a node leads but will never be ready (see checkStuck)
	vRestart    = "restart"      // a crashed node could not start again on its data
	vLiveness   = "liveness"     // sessions or locks left over after every client stopped
	vHarness    = "harness"      // the run itself went wrong (no leader, a hang)
	vUnexpected = "unexpected"   // a request failed with an error no client expects
)

// How beliefs end, besides their validity running out.
const (
	simReleased = "released"
	simExpired  = "a keep-alive said the session expired"
	simCrash    = "the client crashed"
)

type simViolation struct {
	at   time.Duration
	kind string
	msg  string
}

// simHold is one lease as its client saw it: from the grant it observed to
// the moment it stopped believing it held the lock.
type simHold struct {
	client    string
	lock      string
	session   uint64
	ttl       time.Duration
	lockDelay time.Duration
	wait      bool
	token     uint64
	index     uint64 // log index of the grant; 0 when it is not known exactly
	node      string // node that answered the grant
	termLo    uint64 // node's term before the request
	termHi    uint64 // and after

	sent    time.Time // bubble time the acquire was first sent
	anchor  time.Time // bubble time of the send of the latest request the server acknowledged
	granted time.Time // bubble time the client observed the grant
	end     time.Time // bubble time the client stopped believing; zero while it holds
	how     string    // how it ended
}

func (h *simHold) String() string {
	return fmt.Sprintf("%s %q token %d session %x (ttl %v, from %s)", h.client, h.lock, h.token, h.session, h.ttl, h.node)
}

// simStats counts what the runs exercised, over every seed of a test.
type simStats struct {
	grants, void, released, ranOut, serverExpired, crashed atomic.Int64
	terms, faults, crashes, restarts, truncations          atomic.Int64
}

func (s *simStats) String() string {
	return fmt.Sprintf("%d grants (%d void on arrival); beliefs ended by release %d, by validity %d, by the server saying expired %d, by a client crash %d; "+
		"%d leader terms, %d faults (%d node crashes, %d restarts on their data), %d log tail truncations",
		s.grants.Load(), s.void.Load(), s.released.Load(), s.ranOut.Load(), s.serverExpired.Load(), s.crashed.Load(),
		s.terms.Load(), s.faults.Load(), s.crashes.Load(), s.restarts.Load(), s.truncations.Load())
}

// simHistory records what happened in one run, and the violations found.
// It is safe for concurrent use.
type simHistory struct {
	t0    time.Time
	stats *simStats

	mu     sync.Mutex
	events []string
	viol   []simViolation
	grants map[uint64]*simHold // by token
	holds  []*simHold
	hashes map[uint64]simHashSample // applied index -> first state seen there
}

type simHashSample struct {
	hash uint64
	node string
	at   time.Duration
}

func newSimHistory(stats *simStats) *simHistory {
	return &simHistory{t0: time.Now(), stats: stats, grants: map[uint64]*simHold{}, hashes: map[uint64]simHashSample{}}
}

func (h *simHistory) since(t time.Time) time.Duration { return t.Sub(h.t0) }

func (h *simHistory) stamp(t time.Time) string {
	return fmt.Sprintf("+%.3fs", h.since(t).Seconds())
}

func (h *simHistory) logf(format string, args ...any) {
	line := h.stamp(time.Now()) + " " + fmt.Sprintf(format, args...)
	h.mu.Lock()
	h.events = append(h.events, line)
	h.mu.Unlock()
}

func (h *simHistory) violate(kind, format string, args ...any) {
	v := simViolation{at: h.since(time.Now()), kind: kind, msg: fmt.Sprintf(format, args...)}
	h.logf("VIOLATION %s: %s", kind, v.msg)
	h.mu.Lock()
	h.viol = append(h.viol, v)
	h.mu.Unlock()
}

func (h *simHistory) violations() []simViolation {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.viol)
}

func (h *simHistory) count(kind string) int {
	n := 0
	for _, v := range h.violations() {
		if v.kind == kind {
			n++
		}
	}
	return n
}

// trace returns the last n events (all if n <= 0).
func (h *simHistory) trace(n int) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	ev := h.events
	skipped := 0
	if n > 0 && len(ev) > n {
		skipped = len(ev) - n
		ev = ev[skipped:]
	}
	var b strings.Builder
	if skipped > 0 {
		fmt.Fprintf(&b, "  ... %d earlier events (-sim.trace prints all)\n", skipped)
	}
	for _, e := range ev {
		b.WriteString("  ")
		b.WriteString(e)
		b.WriteByte('\n')
	}
	return b.String()
}

// grant records an observed grant and checks at once that its token is
// new and that the node that answered led the cluster.
func (h *simHistory) grant(g *simHold, net *simNet) {
	if !net.ledIn(g.node, g.termLo, g.termHi) {
		h.violate(vLeader, "%s was granted by %s, which sent no AppendEntries as leader in terms %d..%d", g, g.node, g.termLo, g.termHi)
	}
	h.mu.Lock()
	prev := h.grants[g.token]
	if prev == nil {
		h.grants[g.token] = g
	}
	h.holds = append(h.holds, g)
	h.mu.Unlock()
	h.stats.grants.Add(1)
	if prev != nil {
		h.violate(vToken, "token %d granted twice: to %s and to %s", g.token, prev, g)
	}
}

// end records the end of a hold's belief.
func (h *simHistory) end(g *simHold, at time.Time, how string) {
	h.mu.Lock()
	g.end, g.how = at, how
	h.mu.Unlock()
	switch {
	case !at.After(g.granted):
		h.stats.void.Add(1)
		h.logf("%s: %s on arrival: no belief (validity ended before the grant arrived)", g, how)
		return
	case how == simReleased:
		h.stats.released.Add(1)
	case how == simExpired:
		h.stats.serverExpired.Add(1)
	case how == simCrash:
		h.stats.crashed.Add(1)
	default:
		h.stats.ranOut.Add(1)
	}
	h.logf("%s: belief ended %s: %s", g, h.stamp(at), how)
}

// sample records the state of a node at an applied index and checks that
// every replica had the same state there.
func (h *simHistory) sample(node string, hash, applied uint64) {
	at := h.since(time.Now())
	h.mu.Lock()
	prev, ok := h.hashes[applied]
	if !ok {
		h.hashes[applied] = simHashSample{hash, node, at}
	}
	h.mu.Unlock()
	if ok && prev.hash != hash {
		h.violate(vDiverge, "%s has state %016x at applied index %d, but %s had %016x there at +%.3fs",
			node, hash, applied, prev.node, prev.hash, prev.at.Seconds())
	}
}

// checkHolds runs the offline checks over every hold: (1) no two beliefs
// of one lock overlap, and (2) tokens order the grants of a lock.
func (h *simHistory) checkHolds() {
	h.mu.Lock()
	holds := slices.Clone(h.holds)
	h.mu.Unlock()
	byLock := map[string][]*simHold{}
	for _, g := range holds {
		byLock[g.lock] = append(byLock[g.lock], g)
	}
	for _, lock := range slices.Sorted(maps.Keys(byLock)) {
		gs := byLock[lock]
		// Beliefs: grant observed -> end. A hold still open counts as held
		// to the end of time.
		var beliefs []*simHold
		for _, g := range gs {
			if g.end.IsZero() || g.end.After(g.granted) {
				beliefs = append(beliefs, g)
			}
		}
		slices.SortFunc(beliefs, func(a, b *simHold) int { return a.granted.Compare(b.granted) })
		for i, a := range beliefs {
			for _, b := range beliefs[i+1:] {
				if !a.end.IsZero() && !b.granted.Before(a.end) {
					break // sorted by start: no later one overlaps a
				}
				overlap := "forever"
				if !a.end.IsZero() {
					overlap = simMinTime(a.end, b.endOr(a.end)).Sub(b.granted).String()
				}
				h.violate(vOverlap, "lock %q: %s believed it held the lock from %s to %s (%s); %s was granted at %s while it did: %s of overlap",
					lock, a, h.stamp(a.granted), h.endStamp(a), a.how, b, h.stamp(b.granted), overlap)
				// Fencing: the later grant must carry the higher token,
				// so that a fenced store rejects the earlier holder.
				if b.token <= a.token {
					h.violate(vToken, "lock %q: %s was granted after %s, with a token that is not higher", lock, b, a)
				}
			}
		}
		// A holder that crashed leaves its session to expire: nobody may
		// be granted the lock before its TTL has passed since the last
		// request the server acknowledged, and then its lock-delay. Clock
		// rates within the budget may shorten both by 1%.
		byToken := slices.Clone(gs)
		slices.SortFunc(byToken, func(a, b *simHold) int { return cmp.Compare(a.token, b.token) })
		for i, a := range byToken {
			if a.how != simCrash || i+1 == len(byToken) {
				continue
			}
			b := byToken[i+1]
			expiry := a.anchor.Add(a.ttl * 99 / 100)
			switch {
			case b.granted.Before(expiry):
				h.violate(vEarly, "lock %q: %s crashed; its session's last acknowledged request was sent at %s, and %s was granted at %s, before its TTL",
					lock, a, h.stamp(a.anchor), b, h.stamp(b.granted))
			case b.granted.Before(expiry.Add(a.lockDelay * 99 / 100)):
				h.violate(vLockDelay, "lock %q: %s crashed with a lock-delay of %v; its session's last acknowledged request was sent at %s, and %s was granted at %s, before its TTL and lock-delay",
					lock, a, a.lockDelay, h.stamp(a.anchor), b, h.stamp(b.granted))
			}
		}
		// Grants whose log index is known: the token order is the log
		// order.
		var indexed []*simHold
		for _, g := range gs {
			if g.index != 0 {
				indexed = append(indexed, g)
			}
		}
		slices.SortFunc(indexed, func(a, b *simHold) int { return cmp.Compare(a.index, b.index) })
		for i := 1; i < len(indexed); i++ {
			a, b := indexed[i-1], indexed[i]
			if b.token <= a.token || b.index == a.index {
				h.violate(vToken, "lock %q: %s at index %d and %s at index %d: tokens do not increase with the log", lock, a, a.index, b, b.index)
			}
		}
	}
}

func (g *simHold) endOr(def time.Time) time.Time {
	if g.end.IsZero() {
		return def
	}
	return g.end
}

func (h *simHistory) endStamp(g *simHold) string {
	if g.end.IsZero() {
		return "(still held)"
	}
	return h.stamp(g.end)
}

// maxToken returns the highest token observed.
func (h *simHistory) maxToken() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	var m uint64
	for t := range h.grants {
		m = max(m, t)
	}
	return m
}

func (h *simHistory) grantCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.grants)
}

// simNodeState is what the end checks read from one node.
type simNodeState struct {
	hash, applied uint64
	lastToken     uint64
	sessions      []lockstate.SessionInfo
	locks         []lockstate.LockInfo
}

func simReadState(s *Server) simNodeState {
	var st simNodeState
	s.fsm.read(func(m *lockstate.Machine, applied uint64) {
		st.hash, st.applied = m.Hash(), applied
		st.lastToken = m.LastToken()
		st.sessions = m.Sessions()
		st.locks = m.Locks()
	})
	return st
}

// simTracked returns the sessions the leader's timers track, and whether
// s leads with its timers loaded.
func simTracked(s *Server) (map[uint64]bool, bool) {
	l := &s.lead
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.ready || l.timers == nil {
		return nil, false
	}
	out := map[uint64]bool{}
	for id, st := range l.timers.sessions {
		if !st.expiring {
			out[id] = true
		}
	}
	return out, true
}

func simMinTime(ts ...time.Time) time.Time {
	m := ts[0]
	for _, t := range ts[1:] {
		if t.Before(m) {
			m = t
		}
	}
	return m
}

func simMaxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
