package server

// The simulation tier: whole fencer clusters in one process, in a
// testing/synctest bubble, so that seconds of cluster time cost
// milliseconds and every timeout, TTL and election runs on virtual time.
//
// Each seed draws a cluster (3 or 5 nodes over hashicorp/raft
// InmemTransports wrapped with fault hooks, a clock per node with a small
// rate skew, short Raft timeouts, an in-memory or a durable Raft log, small
// snapshot thresholds at times), a few clients, and a fault schedule:
// paused and isolated leaders, minority/majority splits, one-way cuts,
// lossy and slow links, node crashes with restarts on their data (durable
// logs only), leadership transfers, client pauses, crashes and slow links,
// clients cut from nodes, and clock rate changes within the clients' drift
// budget. Leader faults often come with a paused or slow client, as a
// failover hurts most while a holder cannot renew. The clients do what the
// real client backend does, through the nodes' internal service methods:
// acquire (try or wait) with a random session, keep-alives about every
// TTL/3, validity from fencer.ValidUntil of the latest acknowledged send,
// release; they follow the leader and retry with the same session.
//
// The invariants, checked during and after each run:
//
//  1. No two clients believe they hold one lock at once (grant observed to
//     the end of its validity, the release, or a crash). The server never
//     says a session expired while its client still believes it valid, and
//     never grants the lock of a crashed holder before the holder's TTL
//     (from its last acknowledged send) and then its lock-delay have passed.
//  2. A token is granted once; grants of a lock with known log indexes have
//     tokens in log order; of two beliefs that overlap (the control runs),
//     the later grant has the higher token, so fencing still protects; the
//     replicas' last token is at least every token granted. A linearizable
//     Status read after a grant shows it.
//  3. Replicas that applied the same index have the same state, during the
//     run and at the end, when every replica has applied the same index.
//  4. One leader per term (from the AppendEntries on the wire), and every
//     grant came from a node that led in the terms of its request: an old
//     leader, paused or cut off, grants nothing.
//  5. Liveness: once the clients stop and the network heals, every session
//     and lock goes away (released, or expired by the leader); crashed nodes
//     restart on their data; no leader stays unready.
//
// TestSimulationControl runs a family with a clock beyond the budget (a new
// leader whose clock runs 20% fast while a holder is paused) where (1) must
// fire and (2) must still hold, and its twin at the edge of the budget,
// where nothing may fire.
//
// Replay a failing seed with
//
//	go test ./server -run 'TestSimulation$' -sim.seed=S -v
//
// A replay runs the same schedule, clients' choices and network draws, but
// goroutine scheduling and Raft's election jitter are not seeded, so it is
// not bit-exact: a rare failure may need many replays, or the same seed
// among others in parallel (-sim.first=S-10 -sim.seeds=20 -count=10), as
// timing under load is part of what finds it.
//
// Seeds per run: simDefaultSeeds (1000; 300 with -race, which costs about
// three times as much per seed; 50 with -short); -sim.seeds, -sim.first
// and -sim.seed choose others.

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fencerlock/fencer/internal/lockstate"
)

var (
	simSeedsFlag    = flag.Int("sim.seeds", 0, "how many seeds TestSimulation runs; 0 means the default for this build (see simDefaultSeeds)")
	simFirstFlag    = flag.Uint64("sim.first", 1, "the first seed TestSimulation runs")
	simSeedFlag     = flag.Uint64("sim.seed", 0, "run this one seed only (replay), printing its trace")
	simControlsFlag = flag.Int("sim.controls", 0, "how many control seeds TestSimulationControl runs; 0 means the default")
	simTraceFlag    = flag.Bool("sim.trace", false, "print every seed's whole trace")
	simLogFlag      = flag.Bool("sim.log", false, "print the servers' and Raft's logs")
)

// simRateBudget bounds the rate skew of every node's and client's clock in
// the normal runs: two clocks then drift apart by at most 1%, the
// fencer.Drift allowance (1% of the TTL + 2ms) that ValidUntil takes off.
const simRateBudget = 0.005

// simParams is everything a seed decides.
type simParams struct {
	seed    uint64
	control bool    // the control family: beyond the drift budget
	ctlRate float64 // control: the rate of the new leader's clock

	nodes             int
	heartbeat         time.Duration
	logStore          string
	snapshotThreshold uint64
	snapshotInterval  time.Duration
	clients           int
	locks             []string
	ttlMin, ttlMax    time.Duration
	runFor            time.Duration
	netDelay          time.Duration // max delay of a message between nodes
	clientDelay       time.Duration // max delay of a client request or reply
	nodeRates         []float64
	clientRates       []float64
	faults            []*simFault
}

func newSimParams(seed uint64) *simParams {
	rng := rand.New(rand.NewPCG(seed, 0))
	p := &simParams{seed: seed, nodes: 3, logStore: "memory"}
	if rng.IntN(4) == 0 {
		p.nodes = 5
	}
	p.heartbeat = time.Duration(50+rng.IntN(51)) * time.Millisecond
	if rng.IntN(5) == 0 {
		// A durable log, so that nodes can crash and restart on their data.
		p.logStore = []string{"wal", "bolt"}[rng.IntN(2)]
	}
	if rng.IntN(4) == 0 {
		p.snapshotThreshold = uint64(8 + rng.IntN(32))
		p.snapshotInterval = time.Duration(50+rng.IntN(200)) * time.Millisecond
	}
	p.clients = 2 + rng.IntN(4)
	p.locks = []string{"a", "b", "c"}[:1+rng.IntN(3)]
	p.ttlMin = time.Duration(200+rng.IntN(400)) * time.Millisecond
	p.ttlMax = p.ttlMin + time.Duration(rng.IntN(1000))*time.Millisecond
	p.runFor = time.Duration(2000+rng.IntN(2001)) * time.Millisecond
	p.netDelay = time.Duration(rng.IntN(3000)) * time.Microsecond
	p.clientDelay = time.Duration(rng.IntN(3000)) * time.Microsecond
	for range p.nodes {
		p.nodeRates = append(p.nodeRates, (2*rng.Float64()-1)*simRateBudget)
	}
	for range p.clients {
		p.clientRates = append(p.clientRates, (2*rng.Float64()-1)*simRateBudget)
	}
	p.faults = simGenFaults(rng, p)
	return p
}

func (p *simParams) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "  %d nodes, heartbeat %v, log %s", p.nodes, p.heartbeat, p.logStore)
	if p.snapshotThreshold > 0 {
		fmt.Fprintf(&b, ", snapshots every %d entries (checked every %v)", p.snapshotThreshold, p.snapshotInterval)
	}
	fmt.Fprintf(&b, "\n  %d clients on locks %v, TTL %v..%v, run %v, delays up to %v (nodes) %v (clients)\n",
		p.clients, p.locks, p.ttlMin, p.ttlMax, p.runFor, p.netDelay, p.clientDelay)
	fmt.Fprintf(&b, "  clock rates: nodes %s; clients %s\n", simRates(p.nodeRates), simRates(p.clientRates))
	if p.control {
		fmt.Fprintf(&b, "  control: the new leader's clock runs %+.0f%%\n", 100*p.ctlRate)
	}
	for _, f := range p.faults {
		fmt.Fprintf(&b, "  fault %s\n", f)
	}
	return b.String()
}

func simRates(rs []float64) string {
	var out []string
	for _, r := range rs {
		out = append(out, fmt.Sprintf("%+.2f%%", 100*r))
	}
	return strings.Join(out, " ")
}

// simRun is one seed's run.
type simRun struct {
	t        *testing.T
	p        *simParams
	hist     *simHistory
	net      *simNet
	cluster  *simCluster
	clients  []*simClient
	faultRng *rand.Rand
}

// newSimRun sets up a run of p's cluster and network, not started yet.
func newSimRun(t *testing.T, p *simParams, stats *simStats) *simRun {
	hist := newSimHistory(stats)
	r := &simRun{t: t, p: p, hist: hist, faultRng: rand.New(rand.NewPCG(p.seed, 2))}
	r.net = newSimNet(p.seed, hist, p.netDelay, p.clientDelay)
	r.cluster = newSimCluster(t, p, r.net, hist, simQuietLog(hist))
	return r
}

// start starts the cluster and waits for its first leader. Call stop
// afterwards in any case.
func (r *simRun) start(ctx context.Context) error {
	if err := r.cluster.start(ctx); err != nil {
		return err
	}
	if r.cluster.waitLeader(10*time.Second) == nil {
		return fmt.Errorf("no leader within 10s of the start")
	}
	return nil
}

// stop closes the cluster and lets its last goroutines end: hashicorp/raft
// starts a leadership transfer's goroutines with a bare go statement, and
// Shutdown does not wait for them; they end within ten transport timeouts,
// and the bubble must not end before.
func (r *simRun) stop() {
	r.cluster.close()
	time.Sleep(10*simRPCTimeout + 2*r.p.heartbeat)
}

// runSim runs one seed inside the calling synctest bubble and returns its
// history, with the violations found.
func runSim(t *testing.T, p *simParams, stats *simStats, script func(ctx context.Context, r *simRun)) *simHistory {
	r := newSimRun(t, p, stats)
	hist := r.hist
	for i := range p.clients {
		r.clients = append(r.clients, &simClient{
			id:    fmt.Sprintf("c%d", i+1),
			run:   r,
			rng:   rand.New(rand.NewPCG(p.seed, uint64(100+i))),
			clock: newSimClock(time.Duration(i)*time.Minute, p.clientRates[i]),
			main:  &simConn{next: i, rng: rand.New(rand.NewPCG(p.seed, uint64(200+i)))},
		})
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	defer r.stop()
	if err := r.start(ctx); err != nil {
		hist.violate(vHarness, "%v", err)
		return hist
	}

	var bg sync.WaitGroup
	sampleCtx, stopSampling := context.WithCancel(ctx)
	bg.Go(func() { r.sample(sampleCtx) })
	defer func() {
		stopSampling()
		bg.Wait()
	}()

	faultCtx, stopFaults := context.WithCancel(ctx)
	var faults sync.WaitGroup
	faults.Go(func() { r.runFaults(faultCtx) })
	clientCtx, stopClients := context.WithCancel(ctx)
	var clients sync.WaitGroup
	if script != nil {
		clients.Go(func() { script(clientCtx, r) })
	} else {
		for _, c := range r.clients {
			clients.Go(func() { c.loop(clientCtx) })
		}
	}
	time.Sleep(p.runFor)

	// The end: every fault ends, crashed nodes restart, the network heals;
	// then the clients stop, releasing what they hold.
	hist.logf("the run ends: faults end, clients stop")
	stopFaults()
	faults.Wait()
	r.net.healAll()
	stopClients()
	if !simWait(&clients, time.Minute) {
		hist.violate(vHarness, "the clients did not stop within a minute of virtual time:\n%s", simStacks())
		r.cluster.close()
		if !simWait(&clients, time.Minute) {
			// The bubble cannot end: synctest will report the goroutines
			// that are stuck, rather than the test hang.
			hist.violate(vHarness, "the clients did not stop after the nodes closed")
		}
		return hist
	}
	r.quiesce()
	hist.checkHolds()
	return hist
}

// simQuietLog returns the servers' logger: their messages go into the
// trace; with -sim.log, Raft's too, and everything is also printed as it
// happens.
func simQuietLog(hist *simHistory) *slog.Logger {
	if *simLogFlag {
		return slog.New(simLogHandler{hist: hist, raft: true, next: slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})})
	}
	return slog.New(simLogHandler{hist: hist})
}

// simLogHandler puts the servers' log records (Info and above) into the
// trace: Raft's only when raft is set, as partitions make it chatty, but
// for the truncations of a log's tail.
type simLogHandler struct {
	hist  *simHistory
	raft  bool
	next  slog.Handler // also, if not nil
	attrs []slog.Attr
}

func (h simLogHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelInfo || (h.next != nil && h.next.Enabled(ctx, l))
}

func (h simLogHandler) Handle(ctx context.Context, r slog.Record) error {
	if h.next != nil && h.next.Enabled(ctx, r.Level) {
		h.next.Handle(ctx, r.Clone())
	}
	if r.Level < slog.LevelInfo || (!h.raft && strings.Contains(r.Message, " raft: ") && !strings.Contains(r.Message, "clearing log suffix")) {
		return nil
	}
	if strings.Contains(r.Message, "clearing log suffix") {
		h.hist.stats.truncations.Add(1)
	}
	var b strings.Builder
	for _, a := range h.attrs {
		if a.Key != "sim_node" && a.Key != "node" {
			fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		}
	}
	node := ""
	for _, a := range h.attrs {
		if a.Key == "sim_node" {
			node = a.Value.String()
		}
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key != "node" {
			fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		}
		return true
	})
	h.hist.logf("%s says (%s): %s%s", node, r.Level, r.Message, b.String())
	return nil
}

func (h simLogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	h.attrs = append(slices.Clip(h.attrs), as...)
	if h.next != nil {
		h.next = h.next.WithAttrs(as)
	}
	return h
}

func (h simLogHandler) WithGroup(name string) slog.Handler {
	if h.next != nil {
		h.next = h.next.WithGroup(name)
	}
	return h
}

// simWait waits up to d for wg.
func simWait(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

func simStacks() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}

// sample records every running node's state hash about every 10ms, so that
// replicas that pass through the same applied index are compared.
func (r *simRun) sample(ctx context.Context) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			r.sampleAll()
			r.checkStuck()
		}
	}
}

func (r *simRun) sampleAll() {
	for _, n := range r.cluster.nodes {
		n.mu.Lock()
		s, fresh, last := n.srv, n.fresh, n.sampled
		n.mu.Unlock()
		if s == nil {
			continue
		}
		var hash, applied uint64
		s.fsm.read(func(m *lockstate.Machine, a uint64) {
			if applied = a; a != last || fresh {
				hash = m.Hash() // a full snapshot: only when the index moved
			}
		})
		if applied == last && !fresh {
			continue
		}
		n.mu.Lock()
		if n.srv == s {
			n.fresh, n.sampled = false, applied
		}
		n.mu.Unlock()
		r.hist.sample(n.id, hash, applied)
	}
}

// checkStuck finds a node that leads but will never be ready: its leader
// duties returned while Raft kept it leader. It would then serve nothing
// (errNotReady) and expire nothing for as long as it leads. (Seed 21419
// found it: Raft refused the catch-up barrier while a leadership transfer
// from the node's previous term settled, and the duties gave up; they now
// retry while leading.)
func (r *simRun) checkStuck() {
	for _, n := range r.cluster.nodes {
		s := n.server()
		if s == nil {
			continue
		}
		l := &s.lead
		l.mu.Lock()
		stuck := false
		if l.leading && !l.ready && l.done != nil {
			select {
			case <-l.done:
				stuck = true
			default:
			}
		}
		l.mu.Unlock()
		if !stuck || time.Since(n.unstuck) < 500*time.Millisecond {
			continue
		}
		n.unstuck = time.Now()
		r.hist.violate(vStuck, "%s leads (term %d) but its leader duties gave up before it was ready: it serves nothing while it leads", n.id, s.raft.CurrentTerm())
		s.raft.LeadershipTransfer() // so that the run goes on; its outcome shows in the trace
	}
}

// quiesce waits, after the clients stopped and the network healed, until
// every replica has applied the same index with the same state, with no
// session or lock left, and reports what is wrong if that does not
// happen.
func (r *simRun) quiesce() {
	h := r.hist
	limit := 3*r.p.ttlMax + 10*time.Second
	deadline := time.Now().Add(limit)
	for {
		states, ok := r.states()
		if ok && len(states[0].sessions) == 0 && len(states[0].locks) == 0 {
			h.logf("quiet: every replica at applied index %d, state %016x, last token %d", states[0].applied, states[0].hash, states[0].lastToken)
			if lt := states[0].lastToken; lt < h.maxToken() {
				h.violate(vToken, "the replicas' last token is %d, below the token %d a client was granted", lt, h.maxToken())
			}
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Say what is wrong.
	states, same := r.states()
	var desc []string
	for i, n := range r.cluster.nodes {
		st := states[i]
		desc = append(desc, fmt.Sprintf("%s applied=%d hash=%016x lastToken=%d sessions=%d locks=%d",
			n.id, st.applied, st.hash, st.lastToken, len(st.sessions), len(st.locks)))
	}
	if !same {
		h.violate(vConverge, "%v after the end, the replicas differ: %s\nnodes:\n%s", limit, strings.Join(desc, "; "), r.diag())
		return
	}
	l := r.cluster.leader()
	var tracked map[uint64]bool
	ledBy := "no leader"
	if l != nil {
		tracked, _ = simTracked(l.server())
		ledBy = "led by " + l.id
	}
	var left []string
	for _, s := range states[0].sessions {
		left = append(left, fmt.Sprintf("session %x (ttl %v, holds %v, waits %v, tracked by the leader's timers: %v)", s.ID, s.TTL, s.Held, s.Waiting, tracked[s.ID]))
	}
	for _, lk := range states[0].locks {
		left = append(left, fmt.Sprintf("lock %q (holder %x, token %d, delayed %v, waiters %d)", lk.Name, lk.Holder, lk.Token, lk.DelayGeneration != 0, len(lk.Waiters)))
	}
	h.violate(vLiveness, "%v after every client stopped (%s), the state still has: %s\nnodes:\n%s", limit, ledBy, strings.Join(left, "; "), r.diag())
}

// diag describes every node's Raft and leadership state, for a report.
func (r *simRun) diag() string {
	var b strings.Builder
	for _, n := range r.cluster.nodes {
		s := n.server()
		if s == nil {
			fmt.Fprintf(&b, "    %s: down\n", n.id)
			continue
		}
		st := s.raft.Stats()
		s.lead.mu.Lock()
		leading, ready := s.lead.leading, s.lead.ready
		s.lead.mu.Unlock()
		_, applied := s.StateHash()
		fmt.Fprintf(&b, "    %s: raft %s term %s last_log %s/%s commit %s applied %s (fsm %d) last_contact %s; server leading=%v ready=%v\n",
			n.id, st["state"], st["term"], st["last_log_index"], st["last_log_term"], st["commit_index"], st["applied_index"], applied, st["last_contact"], leading, ready)
	}
	return b.String()
}

// states reads every node's state, and reports whether they all agree.
func (r *simRun) states() ([]simNodeState, bool) {
	var out []simNodeState
	same := true
	for _, n := range r.cluster.nodes {
		s := n.server()
		if s == nil {
			out = append(out, simNodeState{})
			same = false
			continue
		}
		st := simReadState(s)
		if len(out) > 0 && (st.applied != out[0].applied || st.hash != out[0].hash) {
			same = false
		}
		out = append(out, st)
	}
	return out, same
}

// simReport formats a failed seed.
func simReport(p *simParams, hist *simHistory, what string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d failed: %s\n", p.seed, what)
	for _, v := range hist.violations() {
		fmt.Fprintf(&b, "  +%.3fs %s: %s\n", v.at.Seconds(), v.kind, v.msg)
	}
	fmt.Fprintf(&b, "schedule:\n%s", p)
	n := 300
	if *simTraceFlag || *simSeedFlag != 0 {
		n = 0
	}
	fmt.Fprintf(&b, "trace:\n%s", hist.trace(n))
	test := "TestSimulation$"
	if p.control {
		test = "TestSimulationControl$"
	}
	fmt.Fprintf(&b, "replay: go test ./server -run '%s' -sim.seed=%d -v", test, p.seed)
	return b.String()
}

// simKinds summarizes violations by kind.
func simKinds(vs []simViolation) string {
	count := map[string]int{}
	var kinds []string
	for _, v := range vs {
		if count[v.kind] == 0 {
			kinds = append(kinds, v.kind)
		}
		count[v.kind]++
	}
	var out []string
	for _, k := range kinds {
		out = append(out, fmt.Sprintf("%s x%d", k, count[k]))
	}
	return strings.Join(out, ", ")
}

// simSeeds returns the seeds to run.
func simSeeds(def int) []uint64 {
	if *simSeedFlag != 0 {
		return []uint64{*simSeedFlag}
	}
	n := *simSeedsFlag
	if n == 0 {
		n = def
		if testing.Short() {
			n = min(n, 50)
		}
	}
	var out []uint64
	for i := range uint64(n) {
		out = append(out, *simFirstFlag+i)
	}
	return out
}

// TestSimulation runs the simulation seeds (see the top of this file).
func TestSimulation(t *testing.T) {
	seeds := simSeeds(simDefaultSeeds)
	start := time.Now()
	var stats simStats
	t.Run("seeds", func(t *testing.T) {
		for _, seed := range seeds {
			t.Run(fmt.Sprint(seed), func(t *testing.T) {
				t.Parallel()
				p := newSimParams(seed)
				synctest.Test(t, func(t *testing.T) {
					hist := runSim(t, p, &stats, nil)
					if v := hist.violations(); len(v) > 0 {
						t.Error(simReport(p, hist, simKinds(v)))
					} else if *simTraceFlag || *simSeedFlag != 0 {
						t.Logf("seed %d passed, %d grants\nschedule:\n%strace:\n%s", seed, hist.grantCount(), p, hist.trace(0))
					}
				})
			})
		}
	})
	el := time.Since(start)
	t.Logf("%d seeds in %v: %.1f seeds/s (race detector: %v)\n%v", len(seeds), el.Round(time.Millisecond), float64(len(seeds))/el.Seconds(), simRace, &stats)
}
