package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/internal/lockstate"
)

// applyTimeout bounds how long a proposal may wait to enter Raft's queue.
const applyTimeout = 10 * time.Second

// maxKeepAlive is the most sessions one KeepAlive may name.
const maxKeepAlive = 10000

// Errors of the service, mapped to status codes by the API layer.
var (
	// errNotReady: this node leads but has not caught up yet.
	errNotReady = errors.New("the leader is catching up; retry shortly")
	// errNoLeader: no leader is known.
	errNoLeader = errors.New("no leader is known; retry shortly")
)

// notLeaderError says which node leads, so the client can go there.
type notLeaderError struct {
	leaderID   string
	leaderAddr string // client API address; empty if unknown
}

func (e *notLeaderError) Error() string {
	if e.leaderAddr == "" {
		return fmt.Sprintf("this node is not the leader; the leader is %s, whose client address is not known yet", e.leaderID)
	}
	return fmt.Sprintf("this node is not the leader; the leader is %s at %s", e.leaderID, e.leaderAddr)
}

// abortedError ends a wait whose session ended.
type abortedError struct{ reason lockstate.AbortReason }

func (e *abortedError) Error() string {
	return fmt.Sprintf("the wait ended without a grant: %v", e.reason)
}

// stateError is a refusal by the state machine.
type stateError struct{ res lockstate.Result }

func (e *stateError) Error() string { return e.res.Message }

func invalid(field, value, accepted string) error {
	return &fencer.InvalidError{Field: field, Value: value, Accepted: accepted}
}

// notLeader returns the error for a request that reached a follower.
func (s *Server) notLeader() error {
	_, id := s.raft.LeaderWithID()
	if id == "" {
		return errNoLeader
	}
	e := &notLeaderError{leaderID: string(id)}
	s.fsm.read(func(m *lockstate.Machine, _ uint64) { e.leaderAddr, _ = m.Member(string(id)) })
	return e
}

// checkLeader returns nil if this node leads and has caught up.
func (s *Server) checkLeader() error {
	l := &s.lead
	l.mu.Lock()
	leading, ready := l.leading, l.ready
	l.mu.Unlock()
	switch {
	case !leading:
		return s.notLeader()
	case !ready:
		return errNotReady
	}
	return nil
}

// raftErr maps an error of a proposal to the service's errors.
func (s *Server) raftErr(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return s.notLeader()
	case errors.Is(err, raft.ErrRaftShutdown), errors.Is(err, errProposerClosed):
		return errNoLeader
	}
	return err
}

func ms(d time.Duration) time.Duration { return d * time.Millisecond }

// acquireArgs is a validated Acquire request.
type acquireArgs struct {
	session   uint64
	name      string
	ttl       time.Duration
	wait      bool
	lockDelay time.Duration
}

func validateAcquire(session uint64, name string, ttlMS, lockDelayMS uint64, wait bool) (acquireArgs, error) {
	if session == 0 {
		return acquireArgs{}, invalid("session_id", "0", "a random non-zero 64-bit number chosen by the client")
	}
	if err := fencer.ValidateName(name); err != nil {
		return acquireArgs{}, err
	}
	const maxMS = uint64(fencer.MaxTTL / time.Millisecond)
	if ttlMS < uint64(fencer.MinTTL/time.Millisecond) || ttlMS > maxMS {
		return acquireArgs{}, invalid("ttl_ms", fmt.Sprint(ttlMS), "10 to 86400000 (10ms to 24h)")
	}
	if lockDelayMS > maxMS {
		return acquireArgs{}, invalid("lock_delay_ms", fmt.Sprint(lockDelayMS), "0 to 86400000 (up to 24h)")
	}
	return acquireArgs{session, name, ms(time.Duration(ttlMS)), wait, ms(time.Duration(lockDelayMS))}, nil
}

// acquireResult is the outcome of an Acquire: a grant or, for a try,
// locked.
type acquireResult struct {
	granted bool
	token   uint64
	index   uint64
}

// acquire opens the session and asks for the lock, in two entries proposed
// back to back, then waits for the grant when asked to.
func (s *Server) acquire(ctx context.Context, a acquireArgs) (acquireResult, error) {
	if err := s.checkLeader(); err != nil {
		return acquireResult{}, err
	}
	var wait chan waitOutcome
	if a.wait {
		wait = s.waiters.add(a.session)
		defer s.waiters.remove(a.session, wait)
	}
	// Track the session before it exists, so a keep-alive that overtakes
	// the open entry does not find it unknown.
	if !s.withTimers(func(t *timers) { t.track(a.session, a.ttl, s.cfg.Clock.Now()) }) {
		return acquireResult{}, s.checkLeader()
	}
	// The open and the acquire go into one entry, back to back.
	wall := s.cfg.Clock.Now()
	pr := s.prop.propose(
		lockstate.OpenSession{ID: a.session, TTL: a.ttl, Now: wall},
		lockstate.Acquire{Session: a.session, Seq: 1, Name: a.name, Wait: a.wait, LockDelay: a.lockDelay, Now: wall},
	)
	results, err := pr.wait()
	if err != nil {
		return acquireResult{}, s.raftErr(err)
	}
	if results[0].Status == lockstate.StatusFailed {
		return acquireResult{}, &stateError{results[0]}
	}
	res := results[1]
	switch res.Status {
	case lockstate.StatusGranted:
		return acquireResult{granted: true, token: res.Token, index: pr.index}, nil
	case lockstate.StatusLocked:
		// A try that failed leaves an empty session behind; close it now
		// rather than make the client pay a round trip for it.
		s.closeSession(a.session)
		return acquireResult{index: pr.index}, nil
	case lockstate.StatusQueued:
	case lockstate.StatusAborted:
		return acquireResult{}, &abortedError{res.Reason}
	default:
		return acquireResult{}, &stateError{res}
	}
	select {
	case out := <-wait:
		if out.lostLeading {
			return acquireResult{}, s.notLeader()
		}
		if out.event.Kind == lockstate.EventGranted {
			return acquireResult{granted: true, token: out.event.Token, index: s.raft.AppliedIndex()}, nil
		}
		return acquireResult{}, &abortedError{out.event.Reason}
	case <-ctx.Done():
		// The session stays queued; its client closes it, or stops
		// keeping it alive and it expires.
		return acquireResult{}, ctx.Err()
	}
}

// release closes a session. It reports false if the session was gone or
// held a different token.
func (s *Server) release(ctx context.Context, session, token uint64) (bool, error) {
	if session == 0 {
		return false, invalid("session_id", "0", "the non-zero ID of a session opened by Acquire")
	}
	if err := s.checkLeader(); err != nil {
		return false, err
	}
	if token != 0 {
		var held bool
		s.fsm.read(func(m *lockstate.Machine, _ uint64) { held = m.SessionHolds(session, token) })
		if !held {
			// A stale token cannot be the session's grant; nothing to do.
			// The session itself may hold nothing else, as it holds at
			// most one lock, so leave it to its own client.
			return false, nil
		}
	}
	res, err := s.closeSession(session)
	if err != nil {
		return false, err
	}
	switch {
	case res.Status == lockstate.StatusOK:
		return true, nil
	case res.Code == lockstate.CodeUnknownSession:
		return false, nil
	}
	return false, &stateError{res}
}

// keepAlive restarts the TTL of sessions and returns those that are gone.
func (s *Server) keepAlive(ctx context.Context, ids []uint64) ([]uint64, error) {
	if len(ids) > maxKeepAlive {
		return nil, invalid("session_ids", fmt.Sprintf("%d sessions", len(ids)), "at most 10000 sessions per call")
	}
	if err := s.checkLeader(); err != nil {
		return nil, err
	}
	received := s.cfg.Clock.Now()
	// Only a leader that a quorum still follows may extend a lease: a
	// deposed leader that has not noticed yet must not promise time that
	// the new leader does not know about.
	if err := s.verifier.verify(ctx); err != nil {
		return nil, s.raftErr(err)
	}
	var expired []uint64
	ok := s.withTimers(func(t *timers) {
		for _, id := range ids {
			if !t.touch(id, received) {
				expired = append(expired, id)
			}
		}
	})
	if !ok {
		return nil, s.checkLeader()
	}
	return expired, nil
}

// status is a linearizable read of lock state.
type status struct {
	locks     []lockstate.LockInfo
	lastToken uint64
	sessions  int
	index     uint64
}

func (s *Server) status(ctx context.Context, name string) (status, error) {
	if name != "" {
		if err := fencer.ValidateName(name); err != nil {
			return status{}, err
		}
	}
	if err := s.linearize(ctx); err != nil {
		return status{}, err
	}
	var st status
	s.fsm.read(func(m *lockstate.Machine, applied uint64) {
		st.index = applied
		st.lastToken = m.LastToken()
		st.sessions = m.SessionCount()
		if name == "" {
			st.locks = m.Locks()
		} else if l, ok := m.Lock(name); ok {
			st.locks = []lockstate.LockInfo{l}
		}
	})
	return st, nil
}

// linearize returns once this node may answer a read with its state: it
// leads, a quorum confirmed that after the read began, and it has applied
// everything committed before the read began.
func (s *Server) linearize(ctx context.Context) error {
	if err := s.checkLeader(); err != nil {
		return err
	}
	index := s.raft.CommitIndex()
	if err := s.verifier.verify(ctx); err != nil {
		return s.raftErr(err)
	}
	return s.fsm.waitApplied(ctx, index)
}

// closeSession proposes the close of a session and forgets its timer.
func (s *Server) closeSession(session uint64) (lockstate.Result, error) {
	res, err := s.apply(lockstate.CloseSession{Session: session, Now: s.cfg.Clock.Now()})
	if err != nil {
		return lockstate.Result{}, err
	}
	s.withTimers(func(t *timers) { t.forget(session) })
	return res, nil
}

// apply proposes one command and returns its result.
func (s *Server) apply(cmd lockstate.Command) (lockstate.Result, error) {
	results, err := s.prop.propose(cmd).wait()
	if err != nil {
		return lockstate.Result{}, s.raftErr(err)
	}
	return results[0], nil
}
