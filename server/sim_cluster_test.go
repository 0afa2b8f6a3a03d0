package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"reflect"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/hashicorp/raft"
)

// This file is the simulation's substrate: per-node clocks, a network of
// hashicorp/raft InmemTransports with fault hooks (cut links, delays,
// drops), and a cluster of in-process nodes. See sim_test.go for the whole.

// simRPCTimeout is how long a Raft RPC into a black hole takes to fail: the
// InmemTransport's own timeout, and the wait of a swallowed message.
const simRPCTimeout = 250 * time.Millisecond

// Errors of the simulated network.
var (
	errSimRefused   = errors.New("sim: connection refused")
	errSimTimeout   = errors.New("sim: no reply (message lost)")
	errSimReplyLost = errors.New("sim: the reply was lost")
)

// simClock is a clock that runs at 1+rate times the speed of the bubble's
// (virtual) time, from an offset. It is a server Clock, and a client's
// clock. It is safe for concurrent use.
type simClock struct {
	mu        sync.Mutex
	realBase  time.Time // bubble time of the last re-anchoring
	clockBase time.Time // what the clock showed then
	rate      float64
}

var _ Clock = (*simClock)(nil)

func newSimClock(offset time.Duration, rate float64) *simClock {
	now := time.Now()
	return &simClock{realBase: now, clockBase: now.Add(offset), rate: rate}
}

func (c *simClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.at(time.Now())
}

func (c *simClock) at(real time.Time) time.Time {
	return c.clockBase.Add(time.Duration(float64(real.Sub(c.realBase)) * (1 + c.rate)))
}

// setRate changes the clock's rate from now on, without a jump.
func (c *simClock) setRate(rate float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	c.clockBase, c.realBase, c.rate = c.at(now), now, rate
}

func (c *simClock) getRate() float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rate
}

// realAt returns the bubble time at which the clock shows ct, if its rate
// does not change. Client clocks never change rate, so this is exact for
// them.
func (c *simClock) realAt(ct time.Time) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.realBase.Add(time.Duration(float64(ct.Sub(c.clockBase)) / (1 + c.rate)))
}

// simLink is a directed link between two nodes, or a client and a node.
type simLink struct{ from, to string }

// simNet is the simulated network: which links are cut (by how many
// faults at once, as faults overlap), which nodes are down, per-message
// delays and drops. Links between clients and nodes are separate from the
// links between nodes. It also watches AppendEntries for two leaders in one
// term. It is safe for concurrent use.
type simNet struct {
	hist *simHistory

	mu          sync.Mutex
	rng         *rand.Rand
	baseDelay   time.Duration            // max delay of every message between nodes
	slow        map[string]time.Duration // extra max delay on a node's links
	drop        float64                  // probability that a message between nodes is lost
	cut         map[simLink]int          // links that refuse messages
	blackhole   map[simLink]int          // links that swallow messages
	down        map[string]bool          // crashed nodes
	clientDelay time.Duration            // max delay of a client request or reply
	clientCut   map[simLink]int          // client -> node links that are cut, both ways
	clientSlow  map[string]time.Duration // extra max delay on a client's requests and replies
	leaders     map[uint64]string        // term -> the node that sent AppendEntries in it
}

func newSimNet(seed uint64, hist *simHistory, baseDelay, clientDelay time.Duration) *simNet {
	return &simNet{
		hist:        hist,
		rng:         rand.New(rand.NewPCG(seed, 1)),
		baseDelay:   baseDelay,
		slow:        map[string]time.Duration{},
		cut:         map[simLink]int{},
		blackhole:   map[simLink]int{},
		down:        map[string]bool{},
		clientDelay: clientDelay,
		clientCut:   map[simLink]int{},
		clientSlow:  map[string]time.Duration{},
		leaders:     map[uint64]string{},
	}
}

// simRoute is the fate of one message.
type simRoute struct {
	delay     time.Duration
	refused   bool // the link is cut or the peer is down: fails at once
	swallowed bool // lost: the sender hears nothing until its timeout
}

func (n *simNet) route(from, to string) simRoute {
	n.mu.Lock()
	defer n.mu.Unlock()
	l := simLink{from, to}
	var r simRoute
	switch {
	case n.down[from] || n.down[to] || n.cut[l] > 0:
		r.refused = true
	case n.blackhole[l] > 0:
		r.swallowed = true
	default:
		if max := n.baseDelay + n.slow[from] + n.slow[to]; max > 0 {
			r.delay = time.Duration(n.rng.Int64N(int64(max) + 1))
		}
		r.swallowed = n.drop > 0 && n.rng.Float64() < n.drop
	}
	return r
}

// cutLinks cuts (or, with heal, restores) the given links both ways;
// blackhole makes them swallow messages rather than refuse them.
func (n *simNet) cutLinks(a, b []string, blackhole, heal bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	m := n.cut
	if blackhole {
		m = n.blackhole
	}
	d := 1
	if heal {
		d = -1
	}
	for _, x := range a {
		for _, y := range b {
			if x != y {
				m[simLink{x, y}] += d
				m[simLink{y, x}] += d
			}
		}
	}
}

// cutOneWay cuts (or restores) the link from -> to only.
func (n *simNet) cutOneWay(from, to string, heal bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	simCount(n.cut, simLink{from, to}, heal)
}

// simCount counts a cut of l, or takes one back.
func simCount(m map[simLink]int, l simLink, heal bool) {
	if heal {
		m[l]--
	} else {
		m[l]++
	}
}

func (n *simNet) setDown(id string, down bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.down[id] = down
}

func (n *simNet) addSlow(id string, d time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.slow[id] += d
}

func (n *simNet) addDrop(p float64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.drop = max(n.drop+p, 0)
}

// cutClient cuts (or restores) the link between a client and a node.
func (n *simNet) cutClient(client, node string, heal bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	simCount(n.clientCut, simLink{client, node}, heal)
}

// healAll restores every link and removes every delay and drop, for the
// end of a run. Crashed nodes stay down until restarted.
func (n *simNet) healAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.cut)
	clear(n.blackhole)
	clear(n.clientCut)
	clear(n.clientSlow)
	clear(n.slow)
	n.drop = 0
}

// clientRoute is the fate of a request from client to node (or of its
// reply): a delay, and whether the link is cut.
func (n *simNet) clientRoute(client, node string) (time.Duration, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	var d time.Duration
	if max := n.clientDelay + n.clientSlow[client]; max > 0 {
		d = time.Duration(n.rng.Int64N(int64(max) + 1))
	}
	return d, n.clientCut[simLink{client, node}] == 0
}

func (n *simNet) addClientSlow(client string, d time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.clientSlow[client] += d
}

func (n *simNet) jitter(max time.Duration) time.Duration {
	n.mu.Lock()
	defer n.mu.Unlock()
	return time.Duration(n.rng.Int64N(int64(max) + 1))
}

// sawAppend records that node from sent AppendEntries in term: the
// invariant is one leader per term, as in hashicorp/raft's fuzzy tests.
func (n *simNet) sawAppend(from string, term uint64, leaderAddr []byte) {
	if len(leaderAddr) > 0 && string(leaderAddr) != from {
		n.hist.violate(vLeader, "%s sent AppendEntries in term %d naming %s as the leader", from, term, leaderAddr)
	}
	n.mu.Lock()
	had, ok := n.leaders[term]
	if !ok {
		n.leaders[term] = from
	}
	n.mu.Unlock()
	switch {
	case !ok:
		n.hist.stats.terms.Add(1)
		n.hist.logf("%s leads term %d", from, term)
	case had != from:
		n.hist.violate(vLeader, "two leaders in term %d: %s and %s both sent AppendEntries", term, had, from)
	}
}

// ledIn reports whether node led some term in [lo, hi].
func (n *simNet) ledIn(node string, lo, hi uint64) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	for t := lo; t <= hi; t++ {
		if n.leaders[t] == node {
			return true
		}
	}
	return false
}

// simTransport is a node's Raft transport: an InmemTransport whose every
// RPC first crosses the simulated network. It refuses pipelining, so that
// every AppendEntries goes through the hooks.
type simTransport struct {
	id    string
	inner *raft.InmemTransport
	net   *simNet
}

var (
	_ raft.Transport   = (*simTransport)(nil)
	_ raft.WithClose   = (*simTransport)(nil)
	_ raft.WithPreVote = (*simTransport)(nil)
)

func (t *simTransport) rpc(target raft.ServerAddress, call func() error) error {
	to := string(target)
	r := t.net.route(t.id, to)
	time.Sleep(r.delay)
	switch {
	case r.refused:
		return errSimRefused
	case r.swallowed:
		time.Sleep(simRPCTimeout)
		return errSimTimeout
	}
	if err := call(); err != nil {
		return err
	}
	// The request took effect; now the reply crosses back.
	back := t.net.route(to, t.id)
	time.Sleep(back.delay)
	switch {
	case back.refused:
		return errSimReplyLost
	case back.swallowed:
		time.Sleep(simRPCTimeout)
		return errSimReplyLost
	}
	return nil
}

func (t *simTransport) Consumer() <-chan raft.RPC          { return t.inner.Consumer() }
func (t *simTransport) LocalAddr() raft.ServerAddress      { return t.inner.LocalAddr() }
func (t *simTransport) SetHeartbeatHandler(func(raft.RPC)) {}
func (t *simTransport) Close() error                       { return t.inner.Close() }

func (t *simTransport) EncodePeer(id raft.ServerID, addr raft.ServerAddress) []byte {
	return t.inner.EncodePeer(id, addr)
}

func (t *simTransport) DecodePeer(b []byte) raft.ServerAddress { return t.inner.DecodePeer(b) }

func (t *simTransport) AppendEntriesPipeline(raft.ServerID, raft.ServerAddress) (raft.AppendPipeline, error) {
	return nil, raft.ErrPipelineReplicationNotSupported
}

func (t *simTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	t.net.sawAppend(t.id, args.Term, args.Addr)
	return t.rpc(target, func() error { return t.inner.AppendEntries(id, target, args, resp) })
}

func (t *simTransport) RequestVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	return t.rpc(target, func() error { return t.inner.RequestVote(id, target, args, resp) })
}

func (t *simTransport) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	return t.rpc(target, func() error { return t.inner.RequestPreVote(id, target, args, resp) })
}

func (t *simTransport) InstallSnapshot(id raft.ServerID, target raft.ServerAddress, args *raft.InstallSnapshotRequest, resp *raft.InstallSnapshotResponse, data io.Reader) error {
	return t.rpc(target, func() error { return t.inner.InstallSnapshot(id, target, args, resp, data) })
}

func (t *simTransport) TimeoutNow(id raft.ServerID, target raft.ServerAddress, args *raft.TimeoutNowRequest, resp *raft.TimeoutNowResponse) error {
	return t.rpc(target, func() error { return t.inner.TimeoutNow(id, target, args, resp) })
}

// simNode is one node of the simulated cluster.
type simNode struct {
	id    string
	dir   string
	clock *simClock

	mu    sync.Mutex
	srv   *Server // nil while crashed
	trans *simTransport
	// sampled is the applied index of the last state sampled, and
	// fresh says none was sampled since the node (re)started.
	sampled uint64
	fresh   bool
	unstuck time.Time // when the simulation last moved a stuck leadership away (sampler goroutine only)
}

func (n *simNode) server() *Server {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.srv
}

// simCluster is the simulated cluster.
type simCluster struct {
	p     *simParams
	net   *simNet
	hist  *simHistory
	log   *slog.Logger
	nodes []*simNode
	byID  map[string]*simNode
}

// simTempDir returns a directory removed at the end of the test. It is on
// tmpfs when there is one: the simulated crash is a process crash, not a
// power loss, so the page cache is durable enough, and fsync there is free.
func simTempDir(t *testing.T) string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if dir, err := os.MkdirTemp("/dev/shm", "fencer-sim-"); err == nil {
			t.Cleanup(func() { os.RemoveAll(dir) })
			return dir
		}
	}
	return t.TempDir()
}

func newSimCluster(t *testing.T, p *simParams, net *simNet, hist *simHistory, log *slog.Logger) *simCluster {
	c := &simCluster{p: p, net: net, hist: hist, log: log, byID: map[string]*simNode{}}
	rng := rand.New(rand.NewPCG(p.seed, 3))
	for i := range p.nodes {
		n := &simNode{
			id:  fmt.Sprintf("n%d", i+1),
			dir: simTempDir(t),
			// Offsets are large and different: the leader's clock alone
			// must count, never a comparison across nodes.
			clock: newSimClock(time.Duration(rng.Int64N(int64(2*time.Hour)))-time.Hour, p.nodeRates[i]),
		}
		c.nodes = append(c.nodes, n)
		c.byID[n.id] = n
	}
	return c
}

// simIDs returns the IDs of nodes.
func simIDs(nodes []*simNode) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.id)
	}
	return out
}

// seed writes into every node's data directory the snapshot a freshly
// bootstrapped cluster of all the nodes would have: an empty state machine
// and a configuration naming every node a voter. The nodes then start as
// restarted members of one cluster. Server.Start can only bootstrap a
// one-node cluster and join others through the client API, which a
// simulation without network listeners does not have.
func (c *simCluster) seed() error {
	var cf raft.Configuration
	for _, n := range c.nodes {
		cf.Servers = append(cf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(n.id), Address: raft.ServerAddress(n.id)})
	}
	_, trans := raft.NewInmemTransport("seed")
	defer trans.Close()
	for _, n := range c.nodes {
		store, err := raft.NewFileSnapshotStore(n.dir, 2, io.Discard)
		if err != nil {
			return err
		}
		sink, err := store.Create(raft.SnapshotVersionMax, 1, 1, cf, 1, trans)
		if err != nil {
			return err
		}
		// The server's own snapshot of an empty state, in whatever format
		// it writes.
		snap, err := newFSM(nil).Snapshot()
		if err != nil {
			return err
		}
		if err := snap.Persist(sink); err != nil {
			return err
		}
		snap.Release()
	}
	return nil
}

// newTransport gives n a fresh transport connected to every other node's.
func (c *simCluster) newTransport(n *simNode) *simTransport {
	_, inner := raft.NewInmemTransportWithTimeout(raft.ServerAddress(n.id), simRPCTimeout)
	tr := &simTransport{id: n.id, inner: inner, net: c.net}
	for _, o := range c.nodes {
		if o == n {
			continue
		}
		o.mu.Lock()
		if o.trans != nil {
			inner.Connect(raft.ServerAddress(o.id), o.trans.inner)
			o.trans.inner.Connect(raft.ServerAddress(n.id), inner)
		}
		o.mu.Unlock()
	}
	return tr
}

func (c *simCluster) config(n *simNode, tr *simTransport) Config {
	return Config{
		NodeID:            n.id,
		DataDir:           n.dir,
		NoClientAPI:       true,
		LogStore:          c.p.logStore,
		HeartbeatTimeout:  c.p.heartbeat,
		SnapshotThreshold: c.p.snapshotThreshold,
		SnapshotInterval:  c.p.snapshotInterval,
		Transport:         tr,
		Clock:             n.clock,
		Logger:            c.log.With("sim_node", n.id),
	}
}

// start seeds and starts every node.
func (c *simCluster) start(ctx context.Context) error {
	if err := c.seed(); err != nil {
		return fmt.Errorf("seed the nodes' data: %w", err)
	}
	for _, n := range c.nodes {
		n.mu.Lock()
		n.trans = c.newTransport(n)
		n.mu.Unlock()
	}
	for _, n := range c.nodes {
		srv, err := Start(ctx, c.config(n, n.trans))
		if err != nil {
			return fmt.Errorf("start %s: %w", n.id, err)
		}
		n.mu.Lock()
		n.srv, n.fresh = srv, true
		n.mu.Unlock()
	}
	return nil
}

// crash stops n abruptly: it is cut off first, so that it neither hands
// leadership over nor says goodbye, then closed.
func (c *simCluster) crash(n *simNode) {
	n.mu.Lock()
	srv := n.srv
	n.srv = nil
	n.mu.Unlock()
	if srv == nil {
		return
	}
	c.net.setDown(n.id, true)
	c.closeServer(n.id, srv)
}

// closeServer closes srv, and checks that Close returns and the verifier
// goroutine ends within a minute of virtual time (Raft's own timeouts are
// far shorter), although hashicorp/raft leaves a future unanswered when it
// shuts down while the future waits in one of its channels
// (hashicorp/raft#498; the server's await copes with that). If they do not,
// that is a violation, and the simulation answers raft's orphaned futures
// so that the run can end.
func (c *simCluster) closeServer(id string, srv *Server) {
	done := make(chan error, 1)
	go func() { done <- srv.Close() }()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(time.Minute)
	closed, stuck := false, false
	for {
		select {
		case err := <-done:
			closed = true
			if err != nil {
				c.hist.logf("close %s: %v", id, err)
			}
		case <-tick.C:
		}
		if closed && !simVerifying(srv) {
			break
		}
		if !stuck && time.Now().After(deadline) {
			stuck = true
			what := "its verifier goroutine is stuck"
			if !closed {
				what = "Close has not returned"
			}
			c.hist.violate(vHarness, "%s: a minute after Close began, %s, waiting on raft futures that raft's shutdown left unanswered (hashicorp/raft#498)", id, what)
		}
		if stuck {
			simAnswerFutures(srv.raft)
		}
	}
	// The futures raft left queued wait for nobody but the goroutines
	// await left behind; answer them, or those would keep the bubble from
	// ending.
	simAnswerFutures(srv.raft)
}

// simVerifying reports whether s's verifier goroutine runs.
func simVerifying(s *Server) bool {
	s.verifier.mu.Lock()
	defer s.verifier.mu.Unlock()
	return s.verifier.running
}

// simAnswerFutures answers with ErrRaftShutdown every future a shut-down
// raft left in its channels: requests its main loop never read, and
// committed entries its FSM goroutine never applied. It reaches into
// raft's unexported fields: test-only, and only for the bug it works
// around.
func simAnswerFutures(r *raft.Raft) int {
	v := reflect.ValueOf(r).Elem()
	shutdown := reflect.ValueOf(&raft.ErrRaftShutdown).Elem()
	n := 0
	answer := func(fut reflect.Value) { // a pointer to a future
		if fut.Kind() != reflect.Pointer || fut.IsNil() {
			return
		}
		errCh := simExported(fut.Elem().FieldByName("errCh"))
		if errCh.IsValid() && simTrySend(errCh, shutdown) {
			n++
		}
	}
	for _, name := range []string{"applyCh", "verifyCh", "configurationChangeCh", "leadershipTransferCh", "userRestoreCh", "fsmMutateCh"} {
		ch := simExported(v.FieldByName(name))
		if !ch.IsValid() {
			continue
		}
		for {
			x, ok := ch.TryRecv()
			if !ok {
				break
			}
			if x.Kind() == reflect.Interface {
				x = x.Elem()
			}
			if x.Kind() != reflect.Slice {
				answer(x)
				continue
			}
			// A batch of committed entries, []*commitTuple.
			for i := range x.Len() {
				if t := x.Index(i); !t.IsNil() {
					answer(simExported(t.Elem().FieldByName("future")))
				}
			}
		}
	}
	return n
}

// simTrySend sends v on ch unless ch is full or closed (the future was
// answered already).
func simTrySend(ch, v reflect.Value) (sent bool) {
	defer func() {
		if recover() != nil {
			sent = false
		}
	}()
	return ch.TrySend(v)
}

// simExported makes an unexported field usable.
func simExported(f reflect.Value) reflect.Value {
	if !f.IsValid() {
		return f
	}
	return reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem()
}

// restart starts a crashed node again on its data directory. A panic in
// Start (hashicorp/raft panics on a log it cannot read) is an error.
func (c *simCluster) restart(ctx context.Context, n *simNode) (err error) {
	if n.server() != nil {
		return nil
	}
	tr := c.newTransport(n)
	c.net.setDown(n.id, false)
	var srv *Server
	func() {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("restart %s on its data (log store %q): Start panicked: %v", n.id, c.p.logStore, p)
			}
		}()
		srv, err = Start(ctx, c.config(n, tr))
	}()
	if err != nil {
		c.net.setDown(n.id, true)
		return fmt.Errorf("restart %s: %w", n.id, err)
	}
	n.mu.Lock()
	n.srv, n.trans, n.fresh = srv, tr, true
	n.mu.Unlock()
	c.hist.stats.restarts.Add(1)
	return nil
}

// leader returns the node that leads and is ready, or nil.
func (c *simCluster) leader() *simNode {
	for _, n := range c.nodes {
		if s := n.server(); s != nil && s.IsLeader() {
			return n
		}
	}
	return nil
}

// waitLeader waits up to d for a ready leader.
func (c *simCluster) waitLeader(d time.Duration) *simNode {
	deadline := time.Now().Add(d)
	for {
		if l := c.leader(); l != nil {
			return l
		}
		if time.Now().After(deadline) {
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// close closes every running node.
func (c *simCluster) close() {
	for _, n := range c.nodes {
		n.mu.Lock()
		srv := n.srv
		n.srv = nil
		n.mu.Unlock()
		if srv != nil {
			c.closeServer(n.id, srv)
		}
	}
}
