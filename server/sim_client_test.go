package server

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/fencerlock/fencer"
)

// This file is the simulated client: what the real client backend
// (client/client.go and the fencer.Lease around it) does, by calling the
// nodes' internal service methods.

var (
	errSimUnreachable = errors.New("sim: the client cannot reach the node")
	errSimCrash       = errors.New("sim: the client crashed")
)

// simCrashed reports whether ctx ended because its client crashed.
func simCrashed(ctx context.Context) bool { return errors.Is(context.Cause(ctx), errSimCrash) }

// simClient is one simulated client process. Its methods run on its own
// goroutine, except pause, which the fault schedule calls.
type simClient struct {
	id    string
	run   *simRun
	rng   *rand.Rand
	clock *simClock
	main  *simConn // the client goroutine's connection

	// onRenew, if set, runs after each acknowledged renewal of a held
	// lease: the control script's trigger.
	onRenew func()

	mu          sync.Mutex
	pausedUntil time.Time
	crash       context.CancelCauseFunc // ends the current incarnation
}

// crashNow crashes the client: it drops everything at once, releasing
// nothing and closing no session, and starts afresh after d. The server
// must expire what it held.
func (c *simClient) crashNow(d time.Duration) {
	c.mu.Lock()
	crash := c.crash
	c.pausedUntil = simMaxTime(c.pausedUntil, time.Now().Add(d))
	c.mu.Unlock()
	if crash != nil {
		crash(errSimCrash)
	}
}

// pause stops the client for d: it sends nothing, and learns nothing, as
// in a GC pause or SIGSTOP. Its leases' validity keeps running.
func (c *simClient) pause(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pausedUntil = simMaxTime(c.pausedUntil, time.Now().Add(d))
}

// waitPause returns once the client is not paused.
func (c *simClient) waitPause() {
	for {
		c.mu.Lock()
		until := c.pausedUntil
		c.mu.Unlock()
		d := time.Until(until)
		if d <= 0 {
			return
		}
		time.Sleep(d)
	}
}

// sleep sleeps for d, then for any pause that began meanwhile.
func (c *simClient) sleep(ctx context.Context, d time.Duration) {
	if d > 0 {
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	c.waitPause()
}

// call sends one request to node n: the request and its reply each cross
// the client's simulated link, which can delay or lose them. The server
// handles it under a context of its own, as over gRPC or Connect: the
// client's deadline travels as the time left when the request was sent,
// so a request delayed in the network keeps its whole budget; a
// cancellation reaches the server at once.
func (c *simClient) call(ctx context.Context, n *simNode, op func(context.Context, *Server) error) error {
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		defer context.AfterFunc(ctx, func() {
			if ctx.Err() == context.Canceled {
				cancel()
			}
		})()
		d, ok := c.run.net.clientRoute(c.id, n.id)
		time.Sleep(d)
		if !ok {
			time.Sleep(20 * time.Millisecond) // a connect timeout
			return errSimUnreachable
		}
		var cancelT context.CancelFunc
		sctx, cancelT = context.WithTimeout(sctx, left)
		defer cancelT()
	} else {
		defer context.AfterFunc(ctx, cancel)()
		d, ok := c.run.net.clientRoute(c.id, n.id)
		time.Sleep(d)
		if !ok {
			time.Sleep(20 * time.Millisecond)
			return errSimUnreachable
		}
	}
	srv := n.server()
	if srv == nil {
		return errSimRefused
	}
	err := op(sctx, srv)
	d, ok := c.run.net.clientRoute(c.id, n.id)
	time.Sleep(d)
	if !ok {
		return errSimReplyLost
	}
	return err
}

// simRetryable reports whether a request that failed with err may be sent
// again, to the same or another node: the errors of a node that does not
// lead (or no longer does), and of the network.
func simRetryable(err error) bool {
	var nl *notLeaderError
	switch {
	case errors.As(err, &nl),
		errors.Is(err, errNoLeader), errors.Is(err, errNotReady),
		errors.Is(err, errSimUnreachable), errors.Is(err, errSimRefused), errors.Is(err, errSimReplyLost),
		errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrLeadershipTransferInProgress), errors.Is(err, raft.ErrRaftShutdown),
		errors.Is(err, raft.ErrEnqueueTimeout), errors.Is(err, raft.ErrAbortedByRestore):
		return true
	}
	return false
}

// simConn is one goroutine's view of the cluster: which node it tries
// first (the last known leader), and its randomness for back-off. It is
// not safe for concurrent use: a client's helper goroutine has its own.
type simConn struct {
	next int
	rng  *rand.Rand
}

// leaderCall runs op against the leader: it follows not-the-leader
// answers and tries every node in turn, with a growing back-off, until op
// succeeds, fails for good, or ctx ends. op must be safe to repeat, as a
// request whose reply was lost may have taken effect.
func (c *simClient) leaderCall(ctx context.Context, conn *simConn, op func(context.Context, *Server) error) error {
	nodes := c.run.cluster.nodes
	backoff := 5 * time.Millisecond
	redirects := 0
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		c.waitPause()
		n := nodes[conn.next%len(nodes)]
		err := c.call(ctx, n, op)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || !simRetryable(err) {
			return err
		}
		var nl *notLeaderError
		if errors.As(err, &nl) && nl.leaderID != n.id && redirects < 3 {
			if l := c.run.cluster.byID[nl.leaderID]; l != nil {
				redirects++
				conn.next = indexOf(nodes, l)
				continue // a fresh leader: go there at once
			}
		}
		redirects = 0
		conn.next = (conn.next + 1) % len(nodes)
		c.sleep(ctx, backoff/2+time.Duration(conn.rng.Int64N(int64(backoff/2)+1)))
		backoff = min(2*backoff, 100*time.Millisecond)
	}
}

func indexOf(nodes []*simNode, n *simNode) int {
	for i, o := range nodes {
		if o == n {
			return i
		}
	}
	return 0
}

// simSession is the client's view of one session: the send time (client
// clock) of the latest request the leader acknowledged, from which the
// lease's validity runs.
type simSession struct {
	id  uint64
	ttl time.Duration

	mu       sync.Mutex
	lastSent time.Time
}

func (s *simSession) acked(sent time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sent.After(s.lastSent) {
		s.lastSent = sent
	}
}

func (s *simSession) sent() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastSent
}

// loop runs leases until ctx ends.
func (c *simClient) loop(ctx context.Context) {
	for ctx.Err() == nil {
		c.waitPause()
		life, crash := context.WithCancelCause(ctx)
		c.mu.Lock()
		c.crash = crash
		c.mu.Unlock()
		c.lease(life)
		crash(nil)
	}
}

// lease takes, holds and releases one lease, or tries to.
func (c *simClient) lease(ctx context.Context) {
	p := c.run.p
	name := p.locks[c.rng.IntN(len(p.locks))]
	ttl := p.ttlMin + time.Duration(c.rng.Int64N(int64(p.ttlMax-p.ttlMin)+1))
	ttl = ttl.Round(time.Millisecond)
	args := acquireArgs{session: c.rng.Uint64() | 1, name: name, ttl: ttl, wait: c.rng.IntN(2) == 0}
	if c.rng.IntN(3) == 0 {
		args.lockDelay = time.Duration(20+c.rng.IntN(280)) * time.Millisecond
	}
	// Hold for up to twice the TTL, so that many leases need several
	// keep-alives.
	hold := time.Duration(c.rng.Int64N(int64(2 * ttl)))
	if g, anchor := c.acquire(ctx, args, 0); g != nil {
		c.keep(ctx, g, anchor, hold)
	}
	c.sleep(ctx, time.Duration(c.rng.Int64N(int64(100*time.Millisecond))))
}

// acquire opens a session and asks for the lock, as client.Backend.Acquire
// does: retried on other nodes with the same session, so never granted
// twice; a waiting acquire keeps its session alive meanwhile. It returns
// the hold if granted, and records it, with the send time (client clock)
// from which its validity runs: the acquire's first send, or a keep-alive
// the waiting acquire had acknowledged since.
//
// A try gives up after 500ms; a wait after timeout, or 1 to 3 TTLs if
// timeout is 0.
func (c *simClient) acquire(ctx context.Context, args acquireArgs, timeout time.Duration) (*simHold, time.Time) {
	h := c.run.hist
	s := &simSession{id: args.session, ttl: args.ttl}
	s.acked(c.clock.Now())
	g := &simHold{client: c.id, lock: args.name, session: args.session, ttl: args.ttl, lockDelay: args.lockDelay, wait: args.wait, sent: time.Now()}
	mode := "try"
	switch {
	case !args.wait:
		timeout = 500 * time.Millisecond
	case timeout == 0:
		timeout = time.Duration(1+c.rng.IntN(3)) * args.ttl
	}
	if args.wait {
		mode = "wait"
	}
	h.logf("%s acquire %q %s session %x ttl %v delay %v", c.id, args.name, mode, args.session, args.ttl, args.lockDelay)
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var kaDone chan struct{}
	if args.wait {
		kaDone = make(chan struct{})
		conn := &simConn{next: c.main.next, rng: rand.New(rand.NewPCG(c.rng.Uint64(), 0))}
		go func() {
			defer close(kaDone)
			c.keepWaiting(actx, conn, s)
		}()
	}
	var res acquireResult
	err := c.leaderCall(actx, c.main, func(sctx context.Context, srv *Server) error {
		lo := srv.raft.CurrentTerm()
		var err error
		res, err = srv.acquire(sctx, args)
		g.node, g.termLo, g.termHi = srv.cfg.NodeID, lo, srv.raft.CurrentTerm()
		return err
	})
	cancel()
	if kaDone != nil {
		<-kaDone
	}
	switch {
	case err != nil:
		var ab *abortedError
		if !errors.As(err, &ab) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) && !simRetryable(err) {
			h.violate(vUnexpected, "%s acquire %q session %x: %v", c.id, args.name, args.session, err)
		}
		h.logf("%s acquire %q session %x failed: %v", c.id, args.name, args.session, err)
		if simCrashed(ctx) {
			return nil, time.Time{}
		}
		// The session may have been opened, and even granted, after all:
		// close it, as the real client does.
		c.closeSession(ctx, s)
		return nil, time.Time{}
	case !res.granted:
		h.logf("%s acquire %q session %x: locked (index %d, %s)", c.id, args.name, args.session, res.index, g.node)
		return nil, time.Time{}
	}
	g.granted = time.Now()
	g.token = res.token
	if !args.wait {
		// A waiting acquire's index is the node's applied index when the
		// grant was pushed, not the grant's own.
		g.index = res.index
	}
	h.logf("%s granted %q token %d session %x by %s (terms %d..%d, index %d)", c.id, args.name, res.token, args.session, g.node, g.termLo, g.termHi, g.index)
	h.grant(g, c.run.net)
	c.run.sampleAll()
	return g, s.sent()
}

// keepWaiting keeps a waiting acquire's session alive, about every TTL/3,
// until ctx ends, as the backend's keepWaitersAlive does.
func (c *simClient) keepWaiting(ctx context.Context, conn *simConn, s *simSession) {
	for {
		next := c.clock.realAt(s.sent().Add(s.ttl / 3))
		for {
			c.sleep(ctx, time.Until(next))
			if ctx.Err() != nil {
				return
			}
			sent := c.clock.Now()
			kctx, cancel := context.WithTimeout(ctx, max(s.ttl/3, 10*time.Millisecond))
			var expired []uint64
			err := c.leaderCall(kctx, conn, func(sctx context.Context, srv *Server) error {
				var err error
				expired, err = srv.keepAlive(sctx, []uint64{s.id})
				return err
			})
			cancel()
			switch {
			case err != nil:
				next = time.Now().Add(max(s.ttl/10, 5*time.Millisecond))
				continue
			case len(expired) > 0:
				// The server aborts the wait; the acquire says so.
				return
			}
			s.acked(sent)
			break
		}
	}
}

// keep holds a granted lease for hold, renewing it about every TTL/3, as
// fencer.Lease does, and releases it. The client believes it holds the lock
// until its validity (fencer.ValidUntil of the latest acknowledged send)
// runs out, a keep-alive says the session is gone, or it sends the release.
func (c *simClient) keep(ctx context.Context, g *simHold, anchor time.Time, hold time.Duration) {
	h := c.run.hist
	c.setAnchor(g, anchor)
	validUntil := c.clock.realAt(fencer.ValidUntil(anchor, g.ttl))
	if !g.granted.Before(validUntil) {
		h.end(g, validUntil, "validity had run out")
		c.release(ctx, g, false)
		return
	}
	if c.rng.IntN(3) == 0 {
		c.readBack(ctx, g, validUntil)
	}
	if simCrashed(ctx) {
		h.end(g, time.Now(), simCrash)
		return
	}
	until := g.granted.Add(hold)
	nextKA := c.clock.realAt(anchor.Add(g.ttl / 3))
	for {
		c.waitPause()
		now := time.Now()
		switch {
		case !now.Before(validUntil):
			h.end(g, validUntil, "validity ran out")
			c.release(ctx, g, false)
			return
		case simCrashed(ctx):
			h.end(g, now, simCrash)
			return
		case ctx.Err() != nil || !now.Before(until):
			h.end(g, now, simReleased)
			c.release(ctx, g, true)
			return
		case !now.Before(nextKA):
			sent := c.clock.Now()
			kctx, cancel := context.WithDeadline(ctx, validUntil)
			var expired []uint64
			err := c.leaderCall(kctx, c.main, func(sctx context.Context, srv *Server) error {
				var err error
				expired, err = srv.keepAlive(sctx, []uint64{g.session})
				return err
			})
			cancel()
			now = time.Now()
			switch {
			case err != nil:
				nextKA = now.Add(max(g.ttl/10, 5*time.Millisecond))
			case len(expired) > 0:
				end := simMinTime(now, validUntil)
				if now.Before(validUntil) {
					h.violate(vEarly, "%s: a keep-alive sent at %s says the session expired, but its validity runs to %s",
						g, h.stamp(c.clock.realAt(sent)), h.stamp(validUntil))
				}
				h.end(g, end, simExpired)
				c.release(ctx, g, false)
				return
			case now.Before(validUntil):
				anchor = sent
				c.setAnchor(g, anchor)
				validUntil = c.clock.realAt(fencer.ValidUntil(anchor, g.ttl))
				nextKA = c.clock.realAt(anchor.Add(g.ttl / 3))
				h.logf("%s renewed %q token %d: valid to %s", c.id, g.lock, g.token, h.stamp(validUntil))
				if c.onRenew != nil {
					c.onRenew()
				}
			default:
				// The reply came after the validity ran out: lost at
				// that moment, whatever the reply says.
				h.end(g, validUntil, "validity ran out during a keep-alive")
				c.release(ctx, g, false)
				return
			}
		default:
			c.sleep(ctx, simMinTime(nextKA, until, validUntil).Sub(now))
		}
	}
}

// setAnchor records in g the bubble time of anchor, a send time on the
// client's clock.
func (c *simClient) setAnchor(g *simHold, anchor time.Time) {
	t := c.clock.realAt(anchor)
	c.run.hist.mu.Lock()
	g.anchor = t
	c.run.hist.mu.Unlock()
}

// readBack reads the lock with a linearizable Status, started after the
// grant was observed: it must show a last token at least the grant's, and,
// while the client still believes it holds the lock, the grant itself. A
// read that fails or times out proves nothing (and a new leader's Status
// can wait for the next command: see TestStatusAfterLeaderChange).
func (c *simClient) readBack(ctx context.Context, g *simHold, validUntil time.Time) {
	h := c.run.hist
	rctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	var lastToken, holder, token uint64
	var from string
	err := c.leaderCall(rctx, c.main, func(sctx context.Context, srv *Server) error {
		st, err := srv.status(sctx, g.lock)
		if err == nil {
			lastToken, holder, token, from = st.lastToken, 0, 0, srv.cfg.NodeID
			if len(st.locks) > 0 {
				holder, token = st.locks[0].Holder, st.locks[0].Token
			}
		}
		return err
	})
	switch {
	case err != nil:
		h.logf("%s status %q: %v", c.id, g.lock, err)
	case lastToken < g.token:
		h.violate(vRead, "%s: a Status read at %s after the grant says the last token is %d", g, from, lastToken)
	case (holder != g.session || token != g.token) && time.Now().Before(validUntil):
		h.violate(vRead, "%s: a Status read at %s after the grant, while the client believes it holds the lock, says it is held by session %x with token %d", g, from, holder, token)
	default:
		h.logf("%s status %q at %s: holder %x token %d, last token %d", c.id, g.lock, from, holder, token, lastToken)
	}
}

// release releases a lease; clean says whether the client still believed
// it held it (otherwise the release only closes the session early).
func (c *simClient) release(ctx context.Context, g *simHold, clean bool) {
	if simCrashed(ctx) {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	token := g.token
	if !clean {
		token = 0 // close the session, whatever it holds
	}
	var released bool
	err := c.leaderCall(rctx, c.main, func(sctx context.Context, srv *Server) error {
		var err error
		released, err = srv.release(sctx, g.session, token)
		return err
	})
	c.run.hist.logf("%s release %q token %d session %x: released=%v err=%v", c.id, g.lock, g.token, g.session, released, err)
}

// closeSession closes a session whose acquire failed or was given up.
func (c *simClient) closeSession(ctx context.Context, s *simSession) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), min(s.ttl, 2*time.Second))
	defer cancel()
	err := c.leaderCall(rctx, c.main, func(sctx context.Context, srv *Server) error {
		_, err := srv.release(sctx, s.id, 0)
		return err
	})
	if err != nil {
		c.run.hist.logf("%s close session %x: %v (it will expire)", c.id, s.id, err)
	}
}
