package server

import (
	"context"
	"sync"
	"time"

	"github.com/fencerlock/fencer/internal/backoff"
	"github.com/fencerlock/fencer/internal/lockstate"
)

// leadership is this node's leader-only state: whether it leads, whether it
// has caught up (ready), and its session and lock-delay timers. Everything
// in it is thrown away when leadership is lost; a new leader rebuilds it
// from the replicated state.
type leadership struct {
	mu      sync.Mutex
	leading bool
	ready   bool // the term's barrier has applied and timers are loaded
	timers  *timers
	stop    chan struct{} // closed when this term's leadership ends
	done    chan struct{} // closed when this term's duties goroutine returns
	wake    chan struct{} // nudges the duties loop to look at its timers
}

// watchLeadership follows Raft's leadership notifications until ctx ends.
func (s *Server) watchLeadership(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			s.stopLeading()
			return
		case leading := <-s.notifyCh:
			if leading {
				s.startLeading()
			} else {
				s.stopLeading()
			}
		}
	}
}

func (s *Server) startLeading() {
	s.stopLeading()
	l := &s.lead
	l.mu.Lock()
	l.leading = true
	l.ready = false
	l.timers = newTimers()
	l.stop = make(chan struct{})
	l.done = make(chan struct{})
	l.wake = make(chan struct{}, 1)
	stop, done := l.stop, l.done
	l.mu.Unlock()
	s.log.Info("leading", "node", s.cfg.NodeID, "term", s.raft.CurrentTerm())
	go func() {
		defer close(done)
		s.leaderDuties(stop)
	}()
}

func (s *Server) stopLeading() {
	l := &s.lead
	l.mu.Lock()
	if !l.leading {
		l.mu.Unlock()
		return
	}
	l.leading, l.ready = false, false
	close(l.stop)
	done := l.done
	l.timers = nil
	l.mu.Unlock()
	<-done
	s.waiters.failAll()
	s.log.Info("stopped leading", "node", s.cfg.NodeID)
}

// leaderDuties catches the new leader up, loads its timers, and then
// proposes expiries and lock-delay lifts as they come due, until stop.
func (s *Server) leaderDuties(stop <-chan struct{}) {
	// Everything earlier leaders committed must be applied before this
	// leader reads sessions or serves reads and keep-alives. A Nop command
	// is the barrier: unlike raft.Barrier's entry (and the term's own
	// no-op), it reaches the state machine, so the applied index that
	// linearize waits for catches up with the commit index.
	//
	// The barrier may fail while Raft keeps this node leader (Raft refuses
	// entries while a leadership transfer from an earlier term settles):
	// giving up then would leave a leader that serves and expires nothing
	// for as long as it leads. So it retries, backing off, until it
	// applies or the leadership ends.
	b := backoff.New(5*time.Millisecond, time.Second)
	for {
		_, err := s.apply(lockstate.Nop{})
		if err == nil {
			break
		}
		s.log.Warn("leader barrier failed; retrying while leading", "err", err)
		t := time.NewTimer(b.Next(-1))
		select {
		case <-stop:
			t.Stop()
			return
		case <-t.C:
		}
	}
	now := s.cfg.Clock.Now()
	l := &s.lead
	l.mu.Lock()
	select {
	case <-stop:
		l.mu.Unlock()
		return
	default:
	}
	s.fsm.read(func(m *lockstate.Machine, _ uint64) {
		// A new leader cannot know how much of a TTL or a delay is left,
		// so it restarts each at its full length: nothing ends early.
		m.EachSession(func(id uint64, ttl time.Duration) { l.timers.track(id, ttl, now) })
		for _, d := range m.PendingDelays() {
			l.timers.delay(d.Name, d.Generation, now.Add(d.Delay))
		}
	})
	l.ready = true
	wake := l.wake
	l.mu.Unlock()
	s.registerSelf(stop)

	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-stop:
			return
		case <-timer.C:
		case <-wake:
		}
		l.mu.Lock()
		if l.timers == nil {
			l.mu.Unlock()
			return
		}
		now := s.cfg.Clock.Now()
		expire, lifts, next := l.timers.due(now)
		l.mu.Unlock()
		s.proposeExpiries(expire, lifts)
		wait := 100 * time.Millisecond
		if !next.IsZero() {
			wait = min(max(next.Sub(s.cfg.Clock.Now()), 0), wait)
		}
		timer.Reset(wait)
	}
}

// proposeExpiries proposes every due expiry and lift at once, so they
// share an append, and settles the timers with the outcomes.
func (s *Server) proposeExpiries(expire []uint64, lifts []timerEntry) {
	if len(expire) == 0 && len(lifts) == 0 {
		return
	}
	wall := s.cfg.Clock.Now()
	props := make([]*proposal, 0, len(expire)+len(lifts))
	for _, id := range expire {
		props = append(props, s.prop.propose(lockstate.ExpireSession{Session: id, Now: wall}))
	}
	for _, e := range lifts {
		props = append(props, s.prop.propose(lockstate.LiftDelay{Name: e.name, Generation: e.gen, Now: wall}))
	}
	for i, pr := range props {
		_, err := pr.wait()
		if i >= len(expire) {
			if err != nil {
				s.log.Warn("lock-delay lift failed", "lock", lifts[i-len(expire)].name, "err", err)
			}
			continue
		}
		id := expire[i]
		s.withTimers(func(t *timers) {
			if err != nil {
				t.retry(id, s.cfg.Clock.Now())
			} else {
				t.forget(id)
			}
		})
		if err == nil {
			s.log.Debug("session expired", "session", id)
		}
	}
}

// onEvents handles the events of applied entries: grants and aborts go to
// waiting calls, lock-delays to the leader's timers.
func (s *Server) onEvents(events []lockstate.Event) {
	s.waiters.dispatch(events)
	for _, e := range events {
		if e.Kind == lockstate.EventDelayed {
			s.withTimers(func(t *timers) { t.delay(e.Name, e.Generation, s.cfg.Clock.Now().Add(e.Delay)) })
			s.nudge()
		}
	}
}

// withTimers runs fn on the leader's timers if this node leads and is
// ready, and reports whether it ran.
func (s *Server) withTimers(fn func(*timers)) bool {
	l := &s.lead
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.ready || l.timers == nil {
		return false
	}
	fn(l.timers)
	return true
}

func (s *Server) nudge() {
	l := &s.lead
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.wake != nil {
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
}

// registerSelf records this node's client address in the replicated state
// when it is missing or old, so that followers can point clients here.
func (s *Server) registerSelf(stop <-chan struct{}) {
	var have string
	s.fsm.read(func(m *lockstate.Machine, _ uint64) { have, _ = m.Member(s.cfg.NodeID) })
	if have == s.addr {
		return
	}
	if _, err := s.apply(lockstate.SetMember{ID: s.cfg.NodeID, Addr: s.addr}); err != nil {
		select {
		case <-stop:
		default:
			s.log.Warn("cannot record this node's client address", "err", err)
		}
	}
}
