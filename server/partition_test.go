package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/hashicorp/raft"
	"github.com/hashicorp/raft-wal/metadb"
	"go.etcd.io/bbolt"

	"github.com/fencerlock/fencer/internal/api/fencerv1"
	"github.com/fencerlock/fencer/internal/api/fencerv1/fencerv1connect"
	"github.com/fencerlock/fencer/internal/rpcclient"
	"github.com/fencerlock/fencer/server"
)

// The partition tests run in-process clusters whose Raft traffic goes over
// hashicorp/raft's InmemTransport, so that a test can cut any link with
// Disconnect, and whose leaders may run on a fake clock, so that session
// expiry and lock-delay happen exactly when the test moves time. The client
// API listens on real loopback ports.

// fakeClock is a server.Clock that moves only when told to.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// inmemCluster is an in-process cluster over InmemTransport.
type inmemCluster struct {
	t     *testing.T
	nodes []*inmemNode
	hc    *http.Client
}

type inmemNode struct {
	id    string
	addr  raft.ServerAddress
	cfg   server.Config
	trans *raft.InmemTransport
	srv   *server.Server // nil while stopped
}

// startInmemCluster starts n nodes: n1 bootstraps, the others join it
// through its client API. tweak, if not nil, adjusts every node's config.
func startInmemCluster(t *testing.T, n int, tweak func(*server.Config)) *inmemCluster {
	t.Helper()
	c := &inmemCluster{t: t, hc: rpcclient.NewHTTPClient()}
	t.Cleanup(c.hc.CloseIdleConnections)
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("n%d", i)
		// The address only names the transport, but Join checks that it
		// looks like host:port.
		nd := &inmemNode{id: id, addr: raft.ServerAddress(id + ".inmem:1"), cfg: nodeConfig(t, id)}
		if tweak != nil {
			tweak(&nd.cfg)
		}
		c.nodes = append(c.nodes, nd)
	}
	for _, nd := range c.nodes {
		_, nd.trans = raft.NewInmemTransport(nd.addr)
	}
	c.heal()
	for i, nd := range c.nodes {
		cfg := nd.cfg
		cfg.Transport = nd.trans
		if i == 0 {
			cfg.Bootstrap = true
		} else {
			cfg.Join = c.nodes[0].srv.Addr()
		}
		nd.srv = startNode(t, cfg)
		if i == 0 {
			waitLeader(t, c.servers())
		}
	}
	c.leader()
	return c
}

// servers returns the running servers.
func (c *inmemCluster) servers() []*server.Server {
	var out []*server.Server
	for _, nd := range c.nodes {
		if nd.srv != nil {
			out = append(out, nd.srv)
		}
	}
	return out
}

func (c *inmemCluster) node(srv *server.Server) *inmemNode {
	for _, nd := range c.nodes {
		if nd.srv == srv {
			return nd
		}
	}
	c.t.Fatalf("no node runs server %s", srv.NodeID())
	return nil
}

// leader waits for a leader among the running nodes.
func (c *inmemCluster) leader() *inmemNode {
	c.t.Helper()
	return c.node(waitLeader(c.t, c.servers()))
}

// leaderOf waits for a leader among nodes.
func (c *inmemCluster) leaderOf(nodes []*inmemNode) *inmemNode {
	c.t.Helper()
	var ss []*server.Server
	for _, nd := range nodes {
		ss = append(ss, nd.srv)
	}
	return c.node(waitLeader(c.t, ss))
}

func (c *inmemCluster) others(skip *inmemNode) []*inmemNode {
	var out []*inmemNode
	for _, nd := range c.nodes {
		if nd != skip && nd.srv != nil {
			out = append(out, nd)
		}
	}
	return out
}

// isolate cuts nd off from every other node, both ways.
func (c *inmemCluster) isolate(nd *inmemNode) {
	nd.trans.DisconnectAll()
	for _, o := range c.nodes {
		if o != nd {
			o.trans.Disconnect(nd.addr)
		}
	}
}

// heal connects every pair of nodes, both ways.
func (c *inmemCluster) heal() {
	for _, a := range c.nodes {
		for _, b := range c.nodes {
			if a != b {
				a.trans.Connect(b.addr, b.trans)
			}
		}
	}
}

// stop closes nd's server gracefully.
func (c *inmemCluster) stop(nd *inmemNode) {
	c.t.Helper()
	if err := nd.srv.Close(); err != nil {
		c.t.Errorf("close %s: %v", nd.id, err)
	}
	nd.srv = nil
}

// restart starts a stopped node again on its data directory, with a new
// transport under the same address, and a new client port.
func (c *inmemCluster) restart(nd *inmemNode) {
	c.t.Helper()
	_, nd.trans = raft.NewInmemTransport(nd.addr)
	c.heal()
	cfg := nd.cfg
	cfg.Transport = nd.trans
	nd.srv = startNode(c.t, cfg)
}

// endpoints returns the client addresses of the running nodes.
func (c *inmemCluster) endpoints() []string { return addrs(c.servers()) }

// conn returns a leader-following connection to the running nodes.
func (c *inmemCluster) conn() *rpcclient.Conn {
	conn := rpcclient.New(rpcclient.Config{Endpoints: c.endpoints(), HTTPClient: c.hc})
	return conn
}

// direct returns a client of one node that does not follow redirects.
func (c *inmemCluster) direct(nd *inmemNode) fencerv1connect.LockServiceClient {
	return fencerv1connect.NewLockServiceClient(c.hc, "http://"+nd.srv.Addr())
}

// waitConverged waits until every running node has applied the same index
// with the same state hash.
func waitConverged(t *testing.T, nodes []*server.Server) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		h0, a0 := nodes[0].StateHash()
		same := true
		var desc string
		for _, n := range nodes {
			h, a := n.StateHash()
			same = same && h == h0 && a == a0
			desc += fmt.Sprintf(" %s(applied=%d hash=%016x)", n.NodeID(), a, h)
		}
		if same {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("replicas did not converge within 20s:%s", desc)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// acquireOK takes lock name for session through conn and returns the
// token.
func acquireOK(t *testing.T, conn *rpcclient.Conn, req *fencerv1.AcquireRequest) uint64 {
	t.Helper()
	resp, err := conn.Acquire(ctxFor(t, 20*time.Second), req)
	if err != nil {
		t.Fatalf("acquire %q with session %d: %v", req.Name, req.SessionId, err)
	}
	if resp.Status != fencerv1.AcquireStatus_ACQUIRE_STATUS_GRANTED {
		t.Fatalf("acquire %q with session %d: %v, want granted", req.Name, req.SessionId, resp.Status)
	}
	return resp.Token
}

// releaseOK releases session's grant of lock name through conn. A leader
// change while a release is in flight can commit the release and still
// fail its reply; the client's retry then finds no session and is answered
// released=false. So released=false passes if the session no longer holds
// the lock afterwards.
func releaseOK(t *testing.T, conn *rpcclient.Conn, name string, session, token uint64) {
	t.Helper()
	r, err := conn.Release(ctxFor(t, 20*time.Second), &fencerv1.ReleaseRequest{SessionId: session, Token: token})
	if err != nil {
		t.Fatalf("release of %q by session %d: %v", name, session, err)
	}
	if r.Released {
		return
	}
	if ls, _ := lockState(t, conn, name); ls != nil && ls.HolderSession == session {
		t.Fatalf("release of %q by session %d answered released=false, and the session still holds it", name, session)
	}
	t.Logf("release of %q by session %d answered released=false, but the session is gone: an earlier attempt took effect across a leader change", name, session)
}

// pending is a waiting Acquire running in the background.
type pending struct {
	done chan struct{}
	resp *fencerv1.AcquireResponse
	err  error
}

// acquireAsync sends a waiting Acquire through conn in the background. The
// test's cleanup ends it.
func acquireAsync(t *testing.T, conn *rpcclient.Conn, req *fencerv1.AcquireRequest) *pending {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	p := &pending{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.resp, p.err = conn.Acquire(ctx, req)
	}()
	t.Cleanup(func() {
		cancel()
		<-p.done
	})
	return p
}

func (p *pending) answered() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// granted waits up to timeout for the answer and checks it is a grant.
func (p *pending) granted(t *testing.T, timeout time.Duration, what string) uint64 {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("%s: the waiting acquire was not answered within %v", what, timeout)
	}
	if p.err != nil {
		t.Fatalf("%s: the waiting acquire failed: %v", what, p.err)
	}
	if p.resp.Status != fencerv1.AcquireStatus_ACQUIRE_STATUS_GRANTED {
		t.Fatalf("%s: the waiting acquire answered %v", what, p.resp.Status)
	}
	return p.resp.Token
}

// nudgeSession is a session ID no test opens.
const nudgeSession = 1<<63 + 4242

// lockState returns the state of lock name through conn (nil if it is free
// and unwaited) and the whole Status answer. A new leader's Status waits
// for the next command to be applied (see TestStatusAfterLeaderChange), so
// when Status does not answer within a few seconds, lockState applies a
// harmless command, the release of a session that does not exist, and asks
// again.
func lockState(t *testing.T, conn *rpcclient.Conn, name string) (*fencerv1.LockState, *fencerv1.StatusResponse) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		st, err := conn.Status(ctx, &fencerv1.StatusRequest{Name: name})
		cancel()
		switch {
		case err == nil && len(st.Locks) == 0:
			return nil, st
		case err == nil:
			return st.Locks[0], st
		case !errors.Is(err, context.DeadlineExceeded) || time.Now().After(deadline):
			t.Fatalf("status of %q: %v", name, err)
		}
		ctx, cancel = context.WithTimeout(context.Background(), 3*time.Second)
		conn.Release(ctx, &fencerv1.ReleaseRequest{SessionId: nudgeSession})
		cancel()
	}
}

// waitLockState waits until cond holds for lock name's state.
func waitLockState(t *testing.T, conn *rpcclient.Conn, name, what string, cond func(*fencerv1.LockState) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ls, _ := lockState(t, conn, name)
		if cond(ls) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("lock %q: %s did not happen within 20s; state %v", name, what, ls)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stillHeld checks, after letting real time pass, that session holds lock
// name and the waiter w has not been answered.
func stillHeld(t *testing.T, conn *rpcclient.Conn, name string, session uint64, w *pending, when string) {
	t.Helper()
	time.Sleep(300 * time.Millisecond) // the leader's duty loop looks at least every 100ms
	ls, _ := lockState(t, conn, name)
	if ls == nil || ls.HolderSession != session {
		t.Fatalf("%s: lock %q is %v, want held by session %d", when, name, ls, session)
	}
	if w != nil && w.answered() {
		t.Fatalf("%s: the waiter was answered (%v, %v) while session %d still holds %q", when, w.resp, w.err, session, name)
	}
}

// refused checks that a call answered with one of the codes a node that
// cannot serve gives: not the leader, or no leader known.
func refused(t *testing.T, what string, err error) {
	t.Helper()
	switch connect.CodeOf(err) {
	case connect.CodeFailedPrecondition, connect.CodeUnavailable:
	default:
		t.Errorf("%s: %v (code %v), want failed_precondition (not the leader) or unavailable", what, err, connect.CodeOf(err))
	}
}

func TestPartitionedLeader(t *testing.T) {
	c := startInmemCluster(t, 3, nil)
	conn := c.conn()
	first := acquireOK(t, conn, &fencerv1.AcquireRequest{SessionId: 1, Name: "a", TtlMs: 60_000})

	old := c.leader()
	direct := c.direct(old)
	c.isolate(old)

	// At once, before the old leader can have noticed: it must neither
	// grant nor answer a read from its own state, which it can no longer
	// confirm is current.
	resp, err := direct.Acquire(ctxFor(t, 20*time.Second), connect.NewRequest(&fencerv1.AcquireRequest{SessionId: 2, Name: "b", TtlMs: 60_000}))
	if err == nil {
		t.Fatalf("the isolated leader answered a try-acquire with %v", resp.Msg)
	}
	refused(t, "try-acquire at the isolated leader", err)
	st, err := direct.Status(ctxFor(t, 20*time.Second), connect.NewRequest(&fencerv1.StatusRequest{}))
	if err == nil {
		t.Fatalf("the isolated leader answered Status from its own state: %v", st.Msg)
	}
	refused(t, "status at the isolated leader", err)

	// The majority elects a leader and goes on granting.
	majority := c.others(old)
	now := c.leaderOf(majority)
	t.Logf("isolated %s; %s leads", old.id, now.id)
	mconn := rpcclient.New(rpcclient.Config{Endpoints: addrs([]*server.Server{majority[0].srv, majority[1].srv}), HTTPClient: c.hc})
	second := acquireOK(t, mconn, &fencerv1.AcquireRequest{SessionId: 3, Name: "c", TtlMs: 60_000})
	if second <= first {
		t.Errorf("token %d granted by the new leader is not above %d", second, first)
	}

	// The old leader, still cut off, knows the state is moving on without
	// it: it refuses writes, reads and keep-alives.
	for _, call := range []struct {
		what string
		do   func(context.Context) error
	}{
		{"try-acquire", func(ctx context.Context) error {
			_, err := direct.Acquire(ctx, connect.NewRequest(&fencerv1.AcquireRequest{SessionId: 4, Name: "d", TtlMs: 60_000}))
			return err
		}},
		{"status", func(ctx context.Context) error {
			_, err := direct.Status(ctx, connect.NewRequest(&fencerv1.StatusRequest{}))
			return err
		}},
		{"keep-alive", func(ctx context.Context) error {
			_, err := direct.KeepAlive(ctx, connect.NewRequest(&fencerv1.KeepAliveRequest{SessionIds: []uint64{1}}))
			return err
		}},
		{"release", func(ctx context.Context) error {
			_, err := direct.Release(ctx, connect.NewRequest(&fencerv1.ReleaseRequest{SessionId: 1}))
			return err
		}},
	} {
		err := call.do(ctxFor(t, 20*time.Second))
		if err == nil {
			t.Errorf("the deposed, isolated leader answered %s", call.what)
			continue
		}
		refused(t, call.what+" at the deposed leader", err)
	}
	if old.srv.IsLeader() {
		t.Errorf("the isolated node %s still says it leads", old.id)
	}

	c.heal()
	waitConverged(t, c.servers())
	c.leader()
	leaders := 0
	for _, s := range c.servers() {
		if s.IsLeader() {
			leaders++
		}
	}
	if leaders > 1 {
		t.Errorf("%d nodes lead after healing", leaders)
	}
	// The uncommitted try-acquire of "b" at the isolated leader left no
	// trace; "a" and "c" are held.
	_, st2 := lockState(t, c.conn(), "")
	var held []string
	for _, l := range st2.Locks {
		held = append(held, fmt.Sprintf("%s:%d", l.Name, l.Token))
	}
	if want := []string{fmt.Sprintf("a:%d", first), fmt.Sprintf("c:%d", second)}; !slices.Equal(held, want) || st2.LastToken != second {
		t.Errorf("after healing: locks %v and last token %d, want %v and %d", held, st2.LastToken, want, second)
	}
}

func TestSessionExpiryOnLeaderClock(t *testing.T) {
	clock := newFakeClock()
	// A spurious election would restart the deadlines again; a longer
	// heartbeat timeout keeps the busy machine from causing one.
	c := startInmemCluster(t, 3, func(cfg *server.Config) { cfg.Clock, cfg.HeartbeatTimeout = clock, time.Second })
	conn := c.conn()
	const ttl = 2 * time.Second

	first := acquireOK(t, conn, &fencerv1.AcquireRequest{SessionId: 1, Name: "x", TtlMs: uint64(ttl.Milliseconds())})
	waiter := acquireAsync(t, conn, &fencerv1.AcquireRequest{SessionId: 2, Name: "x", TtlMs: 3_600_000, Wait: true})
	waitLockState(t, conn, "x", "session 2 queues", func(ls *fencerv1.LockState) bool { return ls != nil && slices.Contains(ls.Waiters, 2) })

	// Time is the leader's clock alone: real time passing expires nothing.
	time.Sleep(time.Second)
	stillHeld(t, conn, "x", 1, waiter, "after 1s of real time and none on the leader's clock")
	clock.Advance(ttl * 3 / 4)
	stillHeld(t, conn, "x", 1, waiter, "3/4 of the TTL on")

	// A keep-alive restarts the TTL.
	if ka, err := conn.KeepAlive(ctxFor(t, 20*time.Second), &fencerv1.KeepAliveRequest{SessionIds: []uint64{1}}); err != nil || len(ka.Expired) != 0 {
		t.Fatalf("keep-alive: %v %v", ka, err)
	}
	renewed := clock.Now() // the session's deadline is now renewed + ttl
	clock.Advance(ttl / 2)
	stillHeld(t, conn, "x", 1, waiter, "past the first deadline, after a renewal")

	// Failover, 3/4 of a TTL after the renewal. The client was promised
	// renewed+ttl; the new leader cannot know how much is left and must
	// restart the deadline at a full TTL from when it took office.
	clock.Advance(ttl / 4) // renewed + 3/4 ttl
	old := c.leader()
	c.isolate(old)
	now := c.leaderOf(c.others(old))
	tookOffice := clock.Now()
	t.Logf("isolated %s; %s leads, %v after the renewal", old.id, now.id, tookOffice.Sub(renewed))
	conn = rpcclient.New(rpcclient.Config{Endpoints: addrs([]*server.Server{c.others(old)[0].srv, c.others(old)[1].srv}), HTTPClient: c.hc})

	clock.Advance(renewed.Add(ttl).Sub(clock.Now()) + ttl/10) // past the promised deadline
	stillHeld(t, conn, "x", 1, waiter, "past the old leader's deadline, before a full TTL under the new leader")
	clock.Advance(tookOffice.Add(ttl).Sub(clock.Now()) + ttl/10) // a full TTL after the new leader took office
	second := waiter.granted(t, 20*time.Second, "after the new leader's full TTL")
	if second != first+1 {
		t.Errorf("the waiter got token %d, want %d", second, first+1)
	}
	ls, _ := lockState(t, conn, "x")
	if ls == nil || ls.HolderSession != 2 {
		t.Errorf("lock x is %v, want held by session 2", ls)
	}
	if ka, err := conn.KeepAlive(ctxFor(t, 20*time.Second), &fencerv1.KeepAliveRequest{SessionIds: []uint64{1, 2}}); err != nil || !slices.Equal(ka.Expired, []uint64{1}) {
		t.Errorf("keep-alive of sessions 1 and 2: %v %v, want session 1 expired", ka, err)
	}
	c.heal()
	waitConverged(t, c.servers())
}

func TestLockDelay(t *testing.T) {
	clock := newFakeClock()
	c := startInmemCluster(t, 3, func(cfg *server.Config) { cfg.Clock, cfg.HeartbeatTimeout = clock, time.Second })
	conn := c.conn()
	const ttl, delay = time.Second, 5 * time.Second

	// Expiry: the lock stays free but ungranted for the delay.
	first := acquireOK(t, conn, &fencerv1.AcquireRequest{SessionId: 1, Name: "d", TtlMs: uint64(ttl.Milliseconds()), LockDelayMs: uint64(delay.Milliseconds())})
	waiter := acquireAsync(t, conn, &fencerv1.AcquireRequest{SessionId: 2, Name: "d", TtlMs: 3_600_000, Wait: true})
	waitLockState(t, conn, "d", "session 2 queues", func(ls *fencerv1.LockState) bool { return ls != nil && slices.Contains(ls.Waiters, 2) })
	clock.Advance(ttl + ttl/10)
	waitLockState(t, conn, "d", "session 1 expires into lock-delay", func(ls *fencerv1.LockState) bool {
		return ls != nil && ls.HolderSession == 0 && ls.Delayed
	})
	expired := clock.Now()
	clock.Advance(delay * 4 / 5)
	time.Sleep(300 * time.Millisecond)
	if ls, _ := lockState(t, conn, "d"); ls == nil || !ls.Delayed || ls.HolderSession != 0 || waiter.answered() {
		t.Fatalf("4/5 into the lock-delay: lock d is %v and the waiter answered=%v; want it delayed, unheld and the waiter waiting", ls, waiter.answered())
	}
	clock.Advance(expired.Add(delay).Sub(clock.Now()) + delay/10)
	if got := waiter.granted(t, 20*time.Second, "after the lock-delay"); got != first+1 {
		t.Errorf("the waiter got token %d after the lock-delay, want %d", got, first+1)
	}

	// Clean release: no delay, the waiter is granted at once, with the
	// clock standing still.
	third := acquireOK(t, conn, &fencerv1.AcquireRequest{SessionId: 3, Name: "e", TtlMs: uint64(ttl.Milliseconds()), LockDelayMs: uint64(delay.Milliseconds())})
	waiter2 := acquireAsync(t, conn, &fencerv1.AcquireRequest{SessionId: 4, Name: "e", TtlMs: 3_600_000, Wait: true})
	waitLockState(t, conn, "e", "session 4 queues", func(ls *fencerv1.LockState) bool { return ls != nil && slices.Contains(ls.Waiters, 4) })
	releaseOK(t, conn, "e", 3, third)
	if got := waiter2.granted(t, 20*time.Second, "after a clean release"); got != third+1 {
		t.Errorf("the waiter got token %d after a clean release, want %d", got, third+1)
	}
	waitConverged(t, c.servers())
}

func TestWaiterIsPushed(t *testing.T) {
	// A long heartbeat timeout keeps elections out of the way of the
	// exact log index check below.
	c := startInmemCluster(t, 3, func(cfg *server.Config) { cfg.HeartbeatTimeout = time.Second })
	conn := c.conn()
	first := acquireOK(t, conn, &fencerv1.AcquireRequest{SessionId: 1, Name: "p", TtlMs: 60_000})
	waiter := acquireAsync(t, conn, &fencerv1.AcquireRequest{SessionId: 2, Name: "p", TtlMs: 60_000, Wait: true})
	waitLockState(t, conn, "p", "session 2 queues", func(ls *fencerv1.LockState) bool { return ls != nil && slices.Contains(ls.Waiters, 2) })
	_, before := lockState(t, conn, "p")

	released := time.Now()
	rel, err := conn.Release(ctxFor(t, 20*time.Second), &fencerv1.ReleaseRequest{SessionId: 1, Token: first})
	if err != nil || !rel.Released {
		t.Fatalf("release: %v %v", rel, err)
	}
	// Nobody keeps session 2 alive or polls: only a push can answer it.
	// The bound is loose; a missing push would never answer.
	got := waiter.granted(t, 5*time.Second, "after the holder's release")
	t.Logf("the waiter was answered %v after the release was sent", time.Since(released).Round(time.Microsecond))
	if got != first+1 {
		t.Errorf("the waiter got token %d, want %d", got, first+1)
	}
	ls, after := lockState(t, conn, "p")
	if ls == nil || ls.HolderSession != 2 || ls.Token != got {
		t.Fatalf("lock p is %v, want held by session 2 with token %d", ls, got)
	}
	// The release was the only entry committed in between, so it is the
	// entry that granted the waiter.
	if after.RaftIndex != before.RaftIndex+1 {
		t.Errorf("log index went from %d to %d over the release; want one entry, the release that also grants the waiter", before.RaftIndex, after.RaftIndex)
	}
}

// snapshotIndex returns the highest log index of a snapshot in a node's
// data directory, or 0 if it has none.
func snapshotIndex(t *testing.T, dataDir string) uint64 {
	t.Helper()
	metas, err := filepath.Glob(filepath.Join(dataDir, "snapshots", "*", "meta.json"))
	if err != nil {
		t.Fatal(err)
	}
	var best uint64
	for _, m := range metas {
		b, err := os.ReadFile(m)
		if err != nil {
			continue // being written
		}
		var meta raft.SnapshotMeta
		if json.Unmarshal(b, &meta) == nil {
			best = max(best, meta.Index)
		}
	}
	return best
}

func TestTokensAcrossSnapshotsAndLeaderChanges(t *testing.T) {
	c := startInmemCluster(t, 3, func(cfg *server.Config) {
		// Not "wal": a wal node cannot restart in the same process (see
		// TestRestartInProcessReleasesWAL).
		cfg.LogStore = "bolt"
		cfg.SnapshotThreshold = 16
		cfg.SnapshotInterval = 20 * time.Millisecond
	})
	var last uint64
	next := uint64(100)
	// cycle grants and releases n locks and checks that tokens strictly
	// increase.
	cycle := func(n int, what string) {
		t.Helper()
		conn := c.conn()
		for range n {
			next++
			tok := acquireOK(t, conn, &fencerv1.AcquireRequest{SessionId: next, Name: "s", TtlMs: 60_000})
			if tok <= last {
				t.Fatalf("%s: token %d after %d", what, tok, last)
			}
			last = tok
			releaseOK(t, conn, "s", next, tok)
		}
	}

	cycle(20, "first grants")
	deadline := time.Now().Add(20 * time.Second)
	for _, nd := range c.nodes {
		for snapshotIndex(t, nd.cfg.DataDir) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%s took no snapshot within 20s", nd.id)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	// Leader changes: the leader steps down, then a leader is cut off.
	old := c.leader()
	c.stop(old)
	c.leaderOf(c.others(old))
	cycle(5, "after the leader stopped")
	c.restart(old)
	cycle(5, "after the old leader came back")
	cut := c.leader()
	c.isolate(cut)
	c.leaderOf(c.others(cut))
	cycle(5, "after the leader was cut off")
	c.heal()
	waitConverged(t, c.servers())

	// Every node restarts from its snapshot (and the log after it).
	for _, nd := range c.nodes {
		if snapshotIndex(t, nd.cfg.DataDir) == 0 {
			t.Fatalf("%s has no snapshot to restart from", nd.id)
		}
		c.stop(nd)
	}
	for _, nd := range c.nodes {
		c.restart(nd)
	}
	c.leader()
	before := last
	cycle(5, "after restarting every node from its snapshot")
	if last != before+5 {
		t.Errorf("after the restart the tokens went from %d to %d over five grants; want %d: the counter must continue", before, last, before+5)
	}
	_, st := lockState(t, c.conn(), "s")
	if st.LastToken != last {
		t.Errorf("status says last token %d, want %d", st.LastToken, last)
	}
	waitConverged(t, c.servers())
}

// TestStatusAfterLeaderChange is a linearizable read on an idle cluster
// right after a leader change. A new leader's Status waits for the state
// machine to reach the commit index; Raft's own no-op and barrier entries
// never reach the state machine, so the leader's barrier must be a command.
func TestStatusAfterLeaderChange(t *testing.T) {
	c := startInmemCluster(t, 3, nil)
	acquireOK(t, c.conn(), &fencerv1.AcquireRequest{SessionId: 1, Name: "a", TtlMs: 60_000})
	old := c.leader()
	c.stop(old)
	now := c.leaderOf(c.others(old))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := c.direct(now).Status(ctx, connect.NewRequest(&fencerv1.StatusRequest{}))
	if errors.Is(err, context.DeadlineExceeded) || connect.CodeOf(err) == connect.CodeDeadlineExceeded {
		t.Fatalf("Status at the new leader %s of an idle cluster did not answer within 5s: %v", now.id, err)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// TestRestartInProcessReleasesWAL checks that a closed node lets go of its
// Raft log, so that it can start again in the same process: raft-wal's
// Close leaves its meta store open, so the server closes it.
func TestRestartInProcessReleasesWAL(t *testing.T) {
	cfg := nodeConfig(t, "n1")
	cfg.Bootstrap = true
	srv := startNode(t, cfg)
	waitLeader(t, []*server.Server{srv})
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	// Opening the meta store with a timeout tells a held lock from a free
	// one without blocking forever as a restart would.
	db, err := bbolt.Open(filepath.Join(cfg.DataDir, "raft-wal", metadb.FileName), 0o600, &bbolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatalf("after Close the WAL's meta store is still locked: %v", err)
	}
	db.Close()
}
