package server

import (
	"container/heap"
	"time"
)

// timers is the leader's record of session deadlines and pending lock-delay
// lifts, on the leader's clock. It is not safe for concurrent use; the
// leader guards it with its mutex.
//
// Deadlines move forward with every keep-alive, so the heap holds a
// possibly stale copy of each deadline: an entry that comes due is checked
// against the session's current deadline and pushed again if it moved. The
// heap so stays O(sessions) and a keep-alive is O(1).
type timers struct {
	sessions map[uint64]*sessionTimer
	delays   map[string]uint64 // lock name -> generation of the pending lift
	heap     timerHeap
}

type sessionTimer struct {
	ttl      time.Duration
	deadline time.Time
	expiring bool // an expiry has been proposed
}

type timerEntry struct {
	at      time.Time
	session uint64 // 0 for a lock-delay lift
	name    string // lock of a lift
	gen     uint64 // generation of a lift
}

type timerHeap []timerEntry

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h timerHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)        { *h = append(*h, x.(timerEntry)) }
func (h *timerHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

func newTimers() *timers {
	return &timers{sessions: make(map[uint64]*sessionTimer), delays: make(map[string]uint64)}
}

// track starts or restarts a session's deadline at now + ttl, never moving
// it earlier.
func (t *timers) track(id uint64, ttl time.Duration, now time.Time) {
	d := now.Add(ttl)
	if s := t.sessions[id]; s != nil {
		if d.After(s.deadline) {
			s.deadline = d
		}
		return
	}
	t.sessions[id] = &sessionTimer{ttl: ttl, deadline: d}
	heap.Push(&t.heap, timerEntry{at: d, session: id})
}

// touch extends a live session's deadline to now + its TTL for a keep-alive
// received at now. It reports false if the session is unknown or its
// deadline had passed (its expiry is proposed or about to be).
func (t *timers) touch(id uint64, now time.Time) bool {
	s := t.sessions[id]
	if s == nil || s.expiring || !now.Before(s.deadline) {
		return false
	}
	if d := now.Add(s.ttl); d.After(s.deadline) {
		s.deadline = d
	}
	return true
}

func (t *timers) forget(id uint64) { delete(t.sessions, id) }

// delay schedules the lift of a lock-delay of generation gen at at.
func (t *timers) delay(name string, gen uint64, at time.Time) {
	t.delays[name] = gen
	heap.Push(&t.heap, timerEntry{at: at, name: name, gen: gen})
}

// due pops what has come due by now: sessions to expire (marked expiring)
// and lifts to propose. It returns the time of the next entry, or the zero
// time if none.
func (t *timers) due(now time.Time) (expire []uint64, lifts []timerEntry, next time.Time) {
	for t.heap.Len() > 0 {
		e := t.heap[0]
		if e.at.After(now) {
			return expire, lifts, e.at
		}
		heap.Pop(&t.heap)
		if e.session == 0 {
			if gen, ok := t.delays[e.name]; ok && gen == e.gen {
				delete(t.delays, e.name)
				lifts = append(lifts, e)
			}
			continue
		}
		s := t.sessions[e.session]
		switch {
		case s == nil || s.expiring:
		case s.deadline.After(now):
			heap.Push(&t.heap, timerEntry{at: s.deadline, session: e.session})
		default:
			s.expiring = true
			expire = append(expire, e.session)
		}
	}
	return expire, lifts, time.Time{}
}

// retry makes a session whose expiry proposal failed due again at now.
func (t *timers) retry(id uint64, now time.Time) {
	if s := t.sessions[id]; s != nil && s.expiring {
		s.expiring = false
		s.deadline = now
		heap.Push(&t.heap, timerEntry{at: now, session: id})
	}
}
