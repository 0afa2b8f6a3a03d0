package server_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/client"
	"github.com/fencerlock/fencer/internal/api/fencerv1"
	"github.com/fencerlock/fencer/internal/api/fencerv1/fencerv1connect"
	"github.com/fencerlock/fencer/internal/cluster"
	"github.com/fencerlock/fencer/internal/rpcclient"
	"github.com/fencerlock/fencer/internal/testutil"
)

// The process tests run three `fencer server` processes and a workload of
// clients contending for a few locks, inject a fault, and check what a lock
// service with fencing tokens promises:
//
//   - no token is issued twice, and each lock's tokens strictly increase in
//     the order its grants were observed;
//   - no two clients hold a lock at once, unless the earlier holder's lease
//     had already ended by the client's own conservative view (Done, or
//     ValidUntil passed): the service excludes only up to lease expiry;
//   - the replicas end with the same state.
//
// The leases' TTL (procTTL) is several times a failover, so a failover
// alone does not make leases run out.
const (
	procTTL       = 5 * time.Second
	procAcquire   = 3 * time.Second // bound of one Acquire, waits included
	procWorkers   = 4
	procHeartbeat = 500 * time.Millisecond
)

var procLocks = []string{"alpha", "beta"}

// startProcessCluster starts three server processes for the test.
func startProcessCluster(t *testing.T) *cluster.Cluster {
	t.Helper()
	cfg := cluster.Config{
		Binary:           testutil.FencerBinary(t),
		Dir:              t.TempDir(),
		Nodes:            3,
		HeartbeatTimeout: procHeartbeat,
	}
	if os.Getenv("FENCER_TEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := cluster.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server logs:\n%s", c.Tails(3000))
		}
		c.Close()
	})
	return c
}

// grant is one grant a worker observed.
type grant struct {
	at     time.Time
	worker int
	lock   string
	token  uint64
}

// holding is a lease a worker holds.
type holding struct {
	worker int
	token  uint64
	lease  *fencer.Lease
}

// believed reports whether the holder may still believe it holds the lock
// at now: its lease is neither lost nor past its conservative validity.
func (h holding) believed(now time.Time) bool {
	return h.lease.Err() == nil && now.Before(h.lease.ValidUntil())
}

// workload is a set of workers, each with its own backend and client,
// looping acquire, hold, release on a few shared locks. It checks mutual
// exclusion and tokens as grants are observed, under one mutex, so the
// order of its records is a real-time order.
type workload struct {
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	mu       sync.Mutex
	holders  map[string][]holding
	order    map[string][]uint64 // per lock, tokens of grants observed while valid
	issuedTo map[uint64]string   // token → lock
	grants   []grant
	problems []string
	failures map[string]int // acquire and release errors, by kind
	lost     int            // leases whose Done fired while held
}

// startWorkload starts the workers against endpoints. They stop at
// w.stop, which the test's cleanup also calls.
func startWorkload(t *testing.T, endpoints []string) *workload {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &workload{
		cancel:   cancel,
		holders:  make(map[string][]holding),
		order:    make(map[string][]uint64),
		issuedTo: make(map[uint64]string),
		failures: make(map[string]int),
	}
	for i := range procWorkers {
		w.wg.Go(func() { w.worker(ctx, i, endpoints) })
	}
	t.Cleanup(w.stop)
	return w
}

func (w *workload) worker(ctx context.Context, id int, endpoints []string) {
	// Each worker lists the endpoints in its own order, so that they do not
	// all try the same dead node first.
	eps := slices.Clone(endpoints)
	for range id {
		eps = append(eps[1:], eps[0])
	}
	b, err := client.New(client.Config{Endpoints: eps})
	if err != nil {
		w.problem("worker %d: new backend: %v", id, err)
		return
	}
	cl := fencer.New(b, nil)
	defer cl.Close()
	for i := 0; ctx.Err() == nil; i++ {
		name := procLocks[(id+i)%len(procLocks)]
		actx, cancel := context.WithTimeout(ctx, procAcquire)
		lease, err := cl.Acquire(actx, name, &fencer.Options{TTL: procTTL})
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				w.fail("acquire", err)
				sleepCtx(ctx, 20*time.Millisecond)
			}
			continue
		}
		w.enter(id, name, lease)
		select {
		case <-time.After(time.Duration(5+id*5) * time.Millisecond):
		case <-lease.Done():
		case <-ctx.Done():
		}
		w.exit(id, name, lease)
		rctx, cancel := context.WithTimeout(context.Background(), procAcquire)
		if err := lease.Release(rctx); err != nil {
			w.fail("release", err)
		}
		cancel()
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func (w *workload) problem(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.problems = append(w.problems, fmt.Sprintf(format, args...))
}

// fail counts an error by its kind: the first line of its message, without
// numbers that differ from call to call.
func (w *workload) fail(op string, err error) {
	kind := op + ": " + errorKind(err)
	w.mu.Lock()
	w.failures[kind]++
	w.mu.Unlock()
}

func errorKind(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline exceeded"
	case errors.Is(err, fencer.ErrLeaseLost):
		return "lease lost"
	}
	msg, _, _ := strings.Cut(err.Error(), "\n")
	if len(msg) > 80 {
		msg = msg[:80]
	}
	return msg
}

// enter records a grant and checks it against the current holders.
func (w *workload) enter(worker int, name string, lease *fencer.Lease) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	token := uint64(lease.Token())
	w.grants = append(w.grants, grant{at: now, worker: worker, lock: name, token: token})
	if other, dup := w.issuedTo[token]; dup {
		w.problems = append(w.problems, fmt.Sprintf("token %d granted twice: for %q and now for %q to worker %d", token, other, name, worker))
	}
	w.issuedTo[token] = name
	var still []holding
	for _, h := range w.holders[name] {
		if h.believed(now) {
			w.problems = append(w.problems, fmt.Sprintf("worker %d was granted %q with token %d while worker %d still held it with token %d, valid for %v more and not told it was lost",
				worker, name, token, h.worker, h.token, h.lease.ValidUntil().Sub(now)))
			still = append(still, h)
		}
	}
	h := holding{worker: worker, token: token, lease: lease}
	if !h.believed(now) {
		// Lost before we could look: the grant may be observed after a
		// later one, so it does not take part in the order check.
		w.holders[name] = still
		return
	}
	if o := w.order[name]; len(o) > 0 && o[len(o)-1] >= token {
		w.problems = append(w.problems, fmt.Sprintf("lock %q: token %d observed after token %d; tokens must strictly increase", name, token, o[len(o)-1]))
	}
	w.order[name] = append(w.order[name], token)
	w.holders[name] = append(still, h)
}

// exit records that worker no longer acts as the holder.
func (w *workload) exit(worker int, name string, lease *fencer.Lease) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if lease.Err() != nil {
		w.lost++
	}
	w.holders[name] = slices.DeleteFunc(w.holders[name], func(h holding) bool { return h.lease == lease })
}

// count returns how many grants were observed so far.
func (w *workload) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.grants)
}

// waitGrants waits until n more grants than already counted have been
// observed: the workload makes progress.
func (w *workload) waitGrants(t *testing.T, n int, timeout time.Duration, what string) {
	t.Helper()
	start := time.Now()
	want := w.count() + n
	for w.count() < want {
		if time.Since(start) > timeout {
			t.Fatalf("%s: only %d of %d more grants within %v; failures so far: %v", what, w.count()-want+n, n, timeout, w.failureSummary())
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("%s: %d grants in %v", what, n, time.Since(start).Round(time.Millisecond))
}

// stop stops the workers and waits for them. It is safe to call again.
func (w *workload) stop() {
	w.cancel()
	w.wg.Wait()
}

func (w *workload) failureSummary() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.failures)
}

// check stops the workload and reports every problem it saw.
func (w *workload) check(t *testing.T) {
	t.Helper()
	start := time.Now()
	w.stop()
	t.Logf("workload stopped in %v", time.Since(start).Round(time.Millisecond))
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range w.problems {
		t.Error(p)
	}
	t.Logf("workload: %d grants (%d tokens), %d leases lost while held, failures %v", len(w.grants), len(w.issuedTo), w.lost, w.failures)
	if len(w.grants) == 0 {
		t.Error("the workload observed no grant at all")
	}
}

// maxToken returns the highest token observed before t0 (or ever, for the
// zero time).
func (w *workload) maxToken(before time.Time) uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	var m uint64
	for _, g := range w.grants {
		if before.IsZero() || g.at.Before(before) {
			m = max(m, g.token)
		}
	}
	return m
}

// grantsAfter returns the grants observed after t0.
func (w *workload) grantsAfter(t0 time.Time) []grant {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []grant
	for _, g := range w.grants {
		if g.at.After(t0) {
			out = append(out, g)
		}
	}
	return out
}

// newLeader waits until a node other than old leads, and returns it.
func newLeader(t *testing.T, c *cluster.Cluster, old string, timeout time.Duration) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		id, err := c.Leader(ctx)
		if err != nil {
			t.Fatalf("no new leader after %s: %v", old, err)
		}
		if id != old {
			return id
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stepDown waits until node id's own state says it does not lead, and
// returns when it saw that.
func stepDown(t *testing.T, c *cluster.Cluster, id string, timeout time.Duration) time.Time {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		states, _ := c.States(ctx)
		for _, s := range states {
			if s.NodeID == id && !s.Leader {
				return time.Now()
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s still says it leads, or does not answer, %v after it was resumed: %+v", id, timeout, states)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func leader(t *testing.T, c *cluster.Cluster) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// converge waits until the running replicas agree, and checks that they
// know every token the workload saw.
func converge(t *testing.T, c *cluster.Cluster, w *workload) {
	t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.WaitConverged(ctx); err != nil {
		t.Fatal(err)
	}
	states, err := c.States(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(states) != 3 {
		t.Fatalf("%d replicas answer, want 3: %+v", len(states), states)
	}
	if m := w.maxToken(time.Time{}); states[0].LastToken < m {
		t.Errorf("the replicas' last token is %d, below token %d a client was granted", states[0].LastToken, m)
	}
	t.Logf("converged in %v", time.Since(start).Round(time.Millisecond))
	t.Logf("replicas agree: applied index %d, hash %s, last token %d", states[0].AppliedIndex, states[0].Hash, states[0].LastToken)
}

func TestProcessKillLeader(t *testing.T) {
	c := startProcessCluster(t)
	w := startWorkload(t, c.Endpoints())
	w.waitGrants(t, 20, 20*time.Second, "before the kill")

	old := leader(t, c)
	if err := c.Kill(old); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	now := newLeader(t, c, old, 20*time.Second)
	t.Logf("killed leader %s; %s leads after %v", old, now, time.Since(killed).Round(time.Millisecond))
	w.waitGrants(t, 20, 20*time.Second, "after the kill")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Restart(ctx, old); err != nil {
		t.Fatal(err)
	}
	w.waitGrants(t, 20, 20*time.Second, "after the restart")
	w.check(t)
	converge(t, c, w)
}

func TestProcessKillAll(t *testing.T) {
	c := startProcessCluster(t)
	w := startWorkload(t, c.Endpoints())
	w.waitGrants(t, 20, 20*time.Second, "before the kill")

	nodes := c.Nodes()
	for _, n := range nodes {
		if err := c.Kill(n.ID); err != nil {
			t.Fatal(err)
		}
	}
	killed := time.Now()
	before := w.maxToken(killed)
	time.Sleep(300 * time.Millisecond) // the clients meet a dead cluster

	restarted := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, n := range nodes {
		if err := c.Restart(ctx, n.ID); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("all nodes killed and restarted; %s leads", leader(t, c))
	w.waitGrants(t, 30, 20*time.Second, "after the restart")
	w.check(t)
	// Every grant of the restarted cluster continues the token counter
	// from where the killed one left it.
	for _, g := range w.grantsAfter(restarted) {
		if g.token <= before {
			t.Errorf("token %d for %q granted after the restart is not above %d, the highest granted before the kill", g.token, g.lock, before)
		}
	}
	converge(t, c, w)
}

// probe is an Acquire sent straight to one node, outside the workload.
type probe struct {
	req  *fencerv1.AcquireRequest
	done chan struct{}
	resp *fencerv1.AcquireResponse
	err  error
}

// probeNode sends n Acquires of fresh locks straight to the node at addr,
// half of them waiting, in the background; the test's cleanup ends them.
func probeNode(t *testing.T, addr string, n int) []*probe {
	hc := rpcclient.NewHTTPClient()
	cl := fencerv1connect.NewLockServiceClient(hc, "http://"+addr)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	var probes []*probe
	for i := range n {
		p := &probe{
			req:  &fencerv1.AcquireRequest{SessionId: uint64(0xbad0000 + i), Name: fmt.Sprintf("probe-%d", i), TtlMs: 60_000, Wait: i%2 == 1},
			done: make(chan struct{}),
		}
		probes = append(probes, p)
		go func() {
			defer close(p.done)
			resp, err := cl.Acquire(ctx, connect.NewRequest(p.req))
			if err == nil {
				p.resp = resp.Msg
			}
			p.err = err
		}()
	}
	t.Cleanup(func() {
		cancel()
		for _, p := range probes {
			<-p.done
		}
		hc.CloseIdleConnections()
	})
	return probes
}

func TestProcessPauseLeader(t *testing.T) {
	c := startProcessCluster(t)
	w := startWorkload(t, c.Endpoints())
	w.waitGrants(t, 20, 20*time.Second, "before the pause")

	old := leader(t, c)
	oldNode, err := c.Node(old)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Pause(old); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	// Requests that reach the old leader while it is stopped wait in its
	// socket; it reads them when it resumes, before it can have learnt
	// that it was deposed.
	probes := probeNode(t, oldNode.Addr, 4)
	now := newLeader(t, c, old, 20*time.Second)
	t.Logf("paused leader %s; %s leads after %v", old, now, time.Since(paused).Round(time.Millisecond))
	// The majority keeps granting, though slowly: a client whose call goes
	// to the paused node waits out its own timeout, and a lock whose
	// release went there stays held until its TTL runs out.
	w.waitGrants(t, 5, 30*time.Second, "while the old leader is paused")

	if err := c.Resume(old); err != nil {
		t.Fatal(err)
	}
	resumed := time.Now()
	// The old leader learns of the new term and steps down. (It may win a
	// later election once it has caught up; that is no fault.)
	followed := stepDown(t, c, old, 20*time.Second)
	t.Logf("the old leader %s follows %v after it was resumed, which was %v after its pause",
		old, followed.Sub(resumed).Round(time.Millisecond), resumed.Sub(paused).Round(time.Millisecond))

	// The deposed leader answers what it received while paused, and grants
	// none of it: a grant needs a commit in its stale term, which the
	// majority has left.
	for _, p := range probes {
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			t.Fatalf("the resumed old leader did not answer acquire %v within 20s", p.req)
		}
		if p.err == nil {
			t.Errorf("the resumed old leader answered acquire %v sent while it was paused with %v", p.req, p.resp)
			continue
		}
		refused(t, fmt.Sprintf("acquire of %q (wait=%v) sent to the paused leader", p.req.Name, p.req.Wait), p.err)
	}
	w.waitGrants(t, 20, 20*time.Second, "after the resume")
	w.check(t)
	converge(t, c, w)
	// The probes left no trace in the replicated state.
	conn := rpcclient.New(rpcclient.Config{Endpoints: c.Endpoints()})
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, p := range probes {
		st, err := conn.Status(ctx, &fencerv1.StatusRequest{Name: p.req.Name})
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Locks) != 0 {
			t.Errorf("probe lock %q sent to the paused leader exists: %v", p.req.Name, st.Locks)
		}
	}
}
