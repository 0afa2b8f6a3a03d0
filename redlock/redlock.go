package redlock

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/internal/backoff"
	"github.com/fencerlock/fencer/internal/rediskey"
	"github.com/fencerlock/fencer/internal/redissub"
)

var (
	//go:embed acquire.lua
	acquireLua string
	//go:embed renew.lua
	renewLua string
	//go:embed release.lua
	releaseLua string
	//go:embed abandon.lua
	abandonLua string
)

// Backend is a fencer.Backend that runs the Redlock algorithm over N
// independent Redis masters. See the package documentation for what it
// guarantees (efficiency, not correctness) and why it issues no token.
//
// A Backend is safe for concurrent use. Close it when done: Close stops the
// pub/sub connections of waiting acquires, waits for every request still in
// flight to a node (each ends within the node timeout), and, for a Backend
// made by Open, closes its Redis clients. It does not release locks. Its
// errors are described on each method: fencer.ErrLocked,
// fencer.ErrLeaseLost, *QuorumError (with a *NodeError per node),
// fencer.ErrClosed, *fencer.InvalidError and ctx's error.
type Backend struct {
	nodes        []node
	quorum       int
	owned        bool // made by Open: Close closes the clients
	prefix       string
	fixedTimeout time.Duration // Config.NodeTimeout; 0 for TTL/20
	afterReplies func()        // Config.AfterReplies: a test hook, usually nil
	minBO, maxBO time.Duration

	acquire, renew, release, abandon *redis.Script

	done chan struct{} // closed by Close; wakes waiters

	mu     sync.RWMutex // closed; held for reading while goroutines are added to inflight
	closed bool
	// inflight counts the nodes' worker goroutines and the background
	// releases of failed attempts.
	inflight sync.WaitGroup
}

type node struct {
	name   string
	client redis.UniversalClient
	sub    *redissub.Subscriber
	// jobs hands a request to an idle worker of this node. Workers live on
	// between requests (see worker), so their stacks, which go-redis grows
	// deep, are grown once and not for every request.
	jobs chan job
}

var _ fencer.Backend = (*Backend)(nil)

// New returns a Backend over cfg.Clients. It does not contact the nodes;
// the first Acquire does. It returns an *fencer.InvalidError if cfg is not
// valid (an even number of nodes, fewer than 3, a nil client).
func New(cfg Config) (*Backend, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	b := &Backend{
		quorum:       len(cfg.Clients)/2 + 1,
		prefix:       cfg.KeyPrefix,
		fixedTimeout: cfg.NodeTimeout,
		afterReplies: cfg.AfterReplies,
		minBO:        cfg.MinBackoff,
		maxBO:        cfg.MaxBackoff,
		acquire:      redis.NewScript(acquireLua),
		renew:        redis.NewScript(renewLua),
		release:      redis.NewScript(releaseLua),
		abandon:      redis.NewScript(abandonLua),
		done:         make(chan struct{}),
	}
	b.nodes = make([]node, len(cfg.Clients))
	for i, c := range cfg.Clients {
		name := "node " + strconv.Itoa(i+1)
		if rc, ok := c.(*redis.Client); ok {
			name = rc.Options().Addr
		}
		if ignoresCtxDeadlines(c) {
			cfg.Logger.Warn("redlock: a node's Redis client ignores ctx deadlines on reads and writes; set ContextTimeoutEnabled in its options, or a request to a stopped node outlives the node timeout", "node", name)
		}
		n := &b.nodes[i]
		n.name, n.client, n.jobs = name, c, make(chan job)
		n.sub = redissub.New(c, cfg.Logger.With("node", name))
	}
	return b, nil
}

// Open returns a Backend with its own Redis clients for a URL of the form
// redlock://[user:password@]host1:port1,host2:port2,host3:port3[/db] (see
// ParseURL) and the default Config. Close closes the clients.
func Open(url string) (*Backend, error) {
	opts, err := ParseURL(url)
	if err != nil {
		return nil, err
	}
	clients := make([]redis.UniversalClient, len(opts))
	for i, o := range opts {
		clients[i] = redis.NewClient(o)
	}
	b, err := New(Config{Clients: clients})
	if err != nil {
		for _, c := range clients {
			_ = c.Close()
		}
		return nil, err
	}
	b.owned = true
	return b, nil
}

// Info reports Kind "redlock", Guarantee Efficiency, and Tokens false:
// Redlock has nothing that could serve as a fencing token.
func (b *Backend) Info() fencer.BackendInfo {
	return fencer.BackendInfo{Kind: "redlock", Guarantee: fencer.Efficiency, Tokens: false}
}

// Key returns the Redis key of the lock name on every node; its release
// channel is Key(name)+":released". Tests and operators use it to inspect
// or delete a lock.
func (b *Backend) Key(name string) string { return rediskey.Key(b.prefix, name) }

// Acquire runs Redlock: it sends SET key value NX PX ttl to every node at
// once (a waiter's later attempts run acquire.lua instead, which also
// reports the holder's remaining TTL), each bounded by the node timeout,
// and grants the lock
// if a majority said yes and the lease still has validity left, TTL −
// elapsed − fencer.Drift(TTL). Otherwise it releases what it got and, with
// req.Wait, tries again with a fresh owner value after a jittered delay or
// as soon as a release is published. The Grant's Sent is the start of the
// successful attempt and its Token is fencer.NoToken.
//
// A try returns an error wrapping fencer.ErrLocked if enough nodes hold
// the lock for other owners that no majority is possible, and a
// *QuorumError, naming each node that did not grant and why, otherwise. A
// waiting Acquire rides out failing nodes with its back-off, and returns
// the last *QuorumError only when a majority of the nodes has failed every
// attempt for a whole TTL. Acquire returns fencer.ErrClosed after Close and
// an error wrapping ctx.Err() when ctx ends first.
func (b *Backend) Acquire(ctx context.Context, req fencer.AcquireRequest) (fencer.Grant, error) {
	if err := b.check(ctx); err != nil {
		return fencer.Grant{}, err
	}
	if req.LockDelay != 0 {
		return fencer.Grant{}, &fencer.InvalidError{Field: "lock delay", Value: req.LockDelay.String(),
			Reason: "the redlock backend has no lock-delay", Accepted: "0"}
	}
	key := b.Key(req.Name)
	var (
		w     *redissub.Waiter
		timer *time.Timer
		bo    = backoff.New(b.minBO, b.maxBO)
	)
	defer func() {
		if w != nil {
			for i := range b.nodes {
				b.nodes[i].sub.Unwatch(key+":released", w)
			}
		}
		if timer != nil {
			timer.Stop()
		}
	}()
	var failingSince time.Time // when a majority of nodes started failing every attempt
	for {
		value := rediskey.NewValue()
		start := time.Now()
		// The first attempt is a plain SET NX; a waiter's later ones run
		// acquire.lua, which also reports how long the holder has left.
		rq := reqAcquire
		if w != nil {
			rq = reqAcquireScript
		}
		rd, err := b.attempt(ctx, rq, req.Name, key, value, req.TTL)
		if err == nil {
			h := &owner{value: value, f: rd.fan, pending: len(b.nodes) - rd.received}
			return fencer.Grant{Name: req.Name, Token: fencer.NoToken, TTL: req.TTL, Sent: start, Handle: h}, nil
		}
		if rd == nil || ctx.Err() != nil || !req.Wait {
			return fencer.Grant{}, err
		}
		if rd.failed < b.quorum {
			failingSince = time.Time{}
		} else if failingSince.IsZero() {
			failingSince = start
		} else if time.Since(failingSince) >= req.TTL {
			return fencer.Grant{}, err
		}
		if rd.yes > 0 {
			// A split vote: the lock may well be free, so try again soon
			// (after a random delay, which is what breaks the tie).
			bo.Reset(b.minBO)
		}
		if w == nil {
			// Subscribe on every node, then try again as soon as a majority
			// of the subscriptions are in effect (the waiter's first wake),
			// so a release between the last attempt and the subscriptions
			// is not missed. A node that never confirms only costs its own
			// wake-ups: the majority, or the back-off, is enough.
			w = redissub.NewWaiter(b.quorum)
			for i := range b.nodes {
				if err := b.nodes[i].sub.Watch(key+":released", w); err != nil {
					return fencer.Grant{}, fencer.ErrClosed
				}
			}
			timer = time.NewTimer(bo.Next(rd.pttl))
		} else {
			timer.Reset(bo.Next(rd.pttl))
		}
		select {
		case <-ctx.Done():
			return fencer.Grant{}, fmt.Errorf("redlock: waiting for lock %q: %w", req.Name, ctx.Err())
		case <-b.done:
			return fencer.Grant{}, fencer.ErrClosed
		case <-w.Wake:
		case <-timer.C:
		}
	}
}

// attempt is one round of Redlock with the owner value value. On failure
// it has already arranged to release whatever the round took.
func (b *Backend) attempt(ctx context.Context, rq request, name, key, value string, ttl time.Duration) (*round, error) {
	timeout := b.nodeTimeout(ttl)
	start := time.Now()
	f := b.fanOut(ctx, nil, timeout, rq, key, value, rediskey.Millis(ttl))
	if f == nil {
		return nil, fencer.ErrClosed
	}
	rd := b.gather(ctx, f, opAcquire, timeout)
	rd.fan = f
	if b.afterReplies != nil {
		b.afterReplies()
	}
	if rd.yes >= b.quorum {
		elapsed := time.Since(start)
		drift := fencer.Drift(ttl)
		if ttl-elapsed-drift > 0 {
			return rd, nil
		}
		b.cleanUp(rd, f, key, value, timeout)
		return rd, fmt.Errorf("redlock: acquire %q: %d of %d nodes granted the lock, but only after %v, "+
			"which leaves none of the %v TTL's validity (TTL − elapsed − drift of %v); use a longer TTL",
			name, rd.yes, len(b.nodes), elapsed.Round(time.Microsecond), ttl, drift)
	}
	b.cleanUp(rd, f, key, value, timeout)
	if err := ctx.Err(); err != nil {
		return rd, errors.Join(fmt.Errorf("redlock: acquire %q: %w", name, err), rd.quorumErr(b, opAcquire, name))
	}
	if rd.no > len(b.nodes)-b.quorum {
		return rd, fmt.Errorf("%w: redlock lock %q is held by another owner on %d of %d nodes",
			fencer.ErrLocked, name, rd.no, len(b.nodes))
	}
	return rd, rd.quorumErr(b, opAcquire, name)
}

// cleanUp deletes, in the background, the key of a failed attempt on
// every node that granted it, failed, or has not answered yet (abandon.lua,
// which wakes nobody). It first waits for the outstanding replies, so that
// a late SET cannot land after the delete.
func (b *Backend) cleanUp(rd *round, f *fan, key, value string, timeout time.Duration) {
	states := append([]state(nil), rd.states...)
	pending := len(b.nodes) - rd.received
	if pending == 0 && rd.yes == 0 && rd.failed == 0 {
		return // every node refused: nothing of ours to release
	}
	if !b.track(1) {
		return
	}
	go func() {
		defer b.inflight.Done()
		for ; pending > 0; pending-- {
			r := <-f.replies
			states[r.node] = outcome(opAcquire, r)
		}
		targets := make([]bool, len(states))
		some := false
		for i, s := range states {
			if s == yes || s == failed {
				targets[i], some = true, true
			}
		}
		if !some {
			return
		}
		// Not the caller's ctx: a cancelled Acquire is exactly when the
		// release matters.
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		if rf := b.fanOut(ctx, targets, timeout, reqAbandon, key, value, 0); rf != nil {
			for range countTrue(targets) {
				<-rf.replies
			}
		}
	}()
}

// Renew resets the lock's TTL to g.TTL on every node that still holds g's
// owner value (compare-and-PEXPIRE, in parallel). It succeeds if a majority
// did so within the lease's validity, and returns g with Sent set to the
// renewal's start. It returns an error wrapping fencer.ErrLeaseLost if so
// many nodes no longer hold the value that no majority is possible (the
// lease expired, or another owner has the lock, who is not disturbed), and
// a *QuorumError otherwise.
func (b *Backend) Renew(ctx context.Context, g fencer.Grant) (fencer.Grant, error) {
	if err := b.check(ctx); err != nil {
		return fencer.Grant{}, err
	}
	h, err := handle(g)
	if err != nil {
		return fencer.Grant{}, err
	}
	key := b.Key(g.Name)
	timeout := b.nodeTimeout(g.TTL)
	start := time.Now()
	f := b.fanOut(ctx, nil, timeout, reqRenew, key, h.value, rediskey.Millis(g.TTL))
	if f == nil {
		return fencer.Grant{}, fencer.ErrClosed
	}
	rd := b.gather(ctx, f, opRenew, timeout)
	if rd.yes >= b.quorum {
		elapsed := time.Since(start)
		if g.TTL-elapsed-fencer.Drift(g.TTL) <= 0 {
			return fencer.Grant{}, fmt.Errorf("redlock: renew %q: %d of %d nodes renewed the lock, but only after %v, which leaves none of the %v TTL's validity",
				g.Name, rd.yes, len(b.nodes), elapsed.Round(time.Microsecond), g.TTL)
		}
		g.Sent = start
		return g, nil
	}
	if rd.no > len(b.nodes)-b.quorum {
		return fencer.Grant{}, fmt.Errorf("%w: redlock lock %q: %d of %d nodes no longer hold it for this owner (it expired or has another owner)",
			fencer.ErrLeaseLost, g.Name, rd.no, len(b.nodes))
	}
	return fencer.Grant{}, withCtx(ctx, rd.quorumErr(b, opRenew, g.Name))
}

// Release deletes the lock on every node that still holds g's owner value
// (compare-and-DEL, in parallel) and announces the release to waiters.
// Nodes that failed are asked again, up to twice, while ctx allows. It
// succeeds once a majority no longer holds the value; it returns an error
// wrapping fencer.ErrLeaseLost if so many nodes no longer held the value at
// the first request that it was no longer held by a majority (another
// owner, if any, is not disturbed), and a *QuorumError otherwise.
func (b *Backend) Release(ctx context.Context, g fencer.Grant) error {
	if err := b.check(ctx); err != nil {
		return err
	}
	h, err := handle(g)
	if err != nil {
		return err
	}
	key := b.Key(g.Name)
	timeout := b.nodeTimeout(g.TTL)
	h.settle(ctx)
	f := b.fanOut(ctx, nil, timeout, reqRelease, key, h.value, 0)
	if f == nil {
		return fencer.ErrClosed
	}
	rd := b.gather(ctx, f, opRelease, timeout)
	// A node that failed may or may not have deleted the key. Ask those
	// again, a few times while ctx allows: a retry that finds the key gone
	// (deleted by the earlier request, expired, or another owner's now)
	// counts as released there, since the node no longer holds this
	// owner's value, which is what releasing means.
	for retry := 0; retry < releaseRetries && rd.yes < b.quorum && rd.failed > 0 && ctx.Err() == nil; retry++ {
		targets := make([]bool, len(b.nodes))
		for i, st := range rd.states {
			targets[i] = st == failed || st == pending
		}
		rf := b.fanOut(ctx, targets, timeout, reqRelease, key, h.value, 0)
		if rf == nil {
			break
		}
		again := b.gather(ctx, rf, opRelease, timeout)
		for i, st := range again.states {
			if st == yes || st == no {
				rd.states[i] = yes
				rd.yes++
				rd.failed--
				rd.errs[i] = nil
			} else if st == failed {
				rd.errs[i] = again.errs[i]
			}
		}
	}
	if rd.yes >= b.quorum {
		return nil
	}
	if rd.no > len(b.nodes)-b.quorum {
		return fmt.Errorf("%w: redlock lock %q: %d of %d nodes no longer held it for this owner (it expired or has another owner)",
			fencer.ErrLeaseLost, g.Name, rd.no, len(b.nodes))
	}
	return withCtx(ctx, rd.quorumErr(b, opRelease, g.Name))
}

// Close stops the nodes' pub/sub connections, waits for requests still in
// flight (each ends within the node timeout) and background releases, and
// closes the Redis clients if Open made them. If a node stopped answering,
// Close can take up to a second (the bound on a pub/sub write) or, for a
// client without ContextTimeoutEnabled, its ReadTimeout. Waiting Acquires
// return fencer.ErrClosed, as do calls after Close.
func (b *Backend) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	close(b.done) // stops the idle workers
	b.mu.Unlock()
	// In parallel: closing a subscriber whose node stopped answering can
	// take up to its call timeout.
	var subs sync.WaitGroup
	for i := range b.nodes {
		subs.Go(b.nodes[i].sub.Close)
	}
	subs.Wait()
	b.inflight.Wait()
	var errs []error
	if b.owned {
		for i := range b.nodes {
			if err := b.nodes[i].client.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close node %s: %w", b.nodes[i].name, err))
			}
		}
	}
	return errors.Join(errs...)
}

func (b *Backend) check(ctx context.Context) error {
	select {
	case <-b.done:
		return fencer.ErrClosed
	default:
	}
	return ctx.Err()
}

// track adds n to inflight unless the Backend is closed.
func (b *Backend) track(n int) bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return false
	}
	b.inflight.Add(n)
	return true
}

// reply is one node's answer to a script.
type reply struct {
	node int
	r    int64
	err  error
}

// fanOut sends rq to every node (or those whose targets entry is true) at
// once, each under a context with the node timeout, and returns the fan
// their replies arrive on. Its channel has room for every reply, so no
// worker waits for the caller to read it. It returns nil after Close.
func (b *Backend) fanOut(ctx context.Context, targets []bool, timeout time.Duration, rq request, key, value string, ttl int64) *fan {
	n := len(b.nodes)
	if targets != nil {
		n = countTrue(targets)
	}
	// Not cancelled with ctx: a caller that stops reading (at a majority,
	// or because ctx ended) must not cut the other requests short, which
	// would leave their outcome unknown. The timeout bounds them; the last
	// request to finish cancels nctx.
	nctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	f := &fan{replies: make(chan reply, n), expired: nctx.Done(), cancel: cancel, targets: targets, n: n}
	f.left.Store(int32(n))
	j := job{f: f, ctx: nctx, rq: rq, keys: []string{key}, value: value, ttl: ttl}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		cancel()
		return nil
	}
	for i := range b.nodes {
		if targets != nil && !targets[i] {
			continue
		}
		j.node = i
		select {
		case b.nodes[i].jobs <- j:
		default: // every worker of the node is busy: start one more
			b.inflight.Add(1)
			go b.worker(&b.nodes[i], j)
		}
	}
	if n == 0 {
		cancel()
	}
	return f
}

// request is what a fan-out asks of each node.
type request uint8

const (
	reqAcquire       request = iota // SET NX PX: 1 granted, 0 held
	reqAcquireScript                // acquire.lua: 1 granted, -1-ms held for ms more, 0 held
	reqRenew                        // renew.lua: 1 renewed, 0 not ours
	reqRelease                      // release.lua: 1 deleted and published, 0 not ours
	reqAbandon                      // abandon.lua: 1 deleted, 0 not ours
)

// job is one request to one node.
type job struct {
	f     *fan
	node  int
	ctx   context.Context
	rq    request
	keys  []string // the lock key; shared by the fan's jobs
	value string
	ttl   int64 // milliseconds
}

// releaseRetries is how many more times Release asks the nodes that failed.
const releaseRetries = 2

// workerIdle is how long a worker waits for the next request before it
// exits.
const workerIdle = 10 * time.Second

// worker runs j, then the node's next requests, until it has been idle for
// workerIdle or the Backend closes.
func (b *Backend) worker(n *node, j job) {
	defer b.inflight.Done()
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		r, err := b.do(n, &j)
		j.f.replies <- reply{node: j.node, r: r, err: err}
		j.f.finish()
		j = job{}
		idle.Reset(workerIdle)
		select {
		case j = <-n.jobs:
		case <-idle.C:
			return
		case <-b.done:
			return
		}
	}
}

// do sends one request to one node and returns its integer answer.
func (b *Backend) do(n *node, j *job) (int64, error) {
	var script *redis.Script
	switch j.rq {
	case reqAcquire:
		// One plain command, the cheapest grant a node can give. Unlike
		// acquire.lua it is not idempotent: if go-redis retries it after a
		// reply was lost on a connection that broke (rare: a restarted
		// server has forgotten the key anyway), the retry finds the
		// attempt's own key and reports the node as held. A granted lock is
		// then released there like everywhere; a failed attempt leaves that
		// one key to expire with its TTL.
		ok, err := n.client.SetNX(j.ctx, j.keys[0], j.value, time.Duration(j.ttl)*time.Millisecond).Result()
		if ok {
			return 1, err
		}
		return 0, err
	case reqAcquireScript:
		script = b.acquire
	case reqRenew:
		script = b.renew
	case reqRelease:
		script = b.release
	case reqAbandon:
		script = b.abandon
	}
	if j.ttl > 0 {
		return script.Run(j.ctx, n.client, j.keys, j.value, j.ttl).Int64()
	}
	return script.Run(j.ctx, n.client, j.keys, j.value).Int64()
}

// fan is one fan-out: its replies and the shared state of its goroutines.
type fan struct {
	replies chan reply
	// expired is closed when the node timeout has passed or every node
	// answered: gather stops waiting then, even for a client that does not
	// apply ctx deadlines to its reads.
	expired <-chan struct{}
	targets []bool // the nodes asked; nil for all
	n       int    // how many were asked
	left    atomic.Int32
	cancel  context.CancelFunc
}

func (f *fan) finish() {
	if f.left.Add(-1) == 0 {
		f.cancel()
	}
}

func countTrue(bs []bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

type op uint8

const (
	opAcquire op = iota
	opRenew
	opRelease
)

func (o op) String() string {
	return [...]string{"acquire", "renew", "release"}[o]
}

// state is one node's part in a round.
type state uint8

const (
	pending state = iota
	yes           // granted, renewed or released
	no            // held by another owner, or no longer ours
	failed        // an error or no reply within the node timeout
	skipped       // not asked in this fan-out
)

func outcome(o op, r reply) state {
	switch {
	case r.err != nil:
		return failed
	case o == opAcquire && r.r > 0, o != opAcquire && r.r == 1:
		return yes
	}
	return no
}

// round tallies the replies of one fan-out.
type round struct {
	states   []state
	errs     []error // why each node that is not yes did not confirm
	received int
	yes, no  int
	failed   int           // failed nodes, including those that never answered
	pttl     time.Duration // acquire: the shortest remaining TTL among refusing nodes; -1 if none known
	fan      *fan          // acquire: the fan-out, whose late replies a grant's release waits for
}

// gather reads replies until a majority confirmed, every node answered,
// the node timeout passed, or ctx ended. Stopping at a majority keeps one
// slow or dead node from slowing down a successful operation; its goroutine
// finishes on its own.
func (b *Backend) gather(ctx context.Context, f *fan, o op, timeout time.Duration) *round {
	n := f.n
	rd := &round{states: make([]state, len(b.nodes)), pttl: -1}
	for i := range f.targets {
		if !f.targets[i] {
			rd.states[i] = skipped
		}
	}
	for rd.received < n && rd.yes < b.quorum {
		var expired bool
		select {
		case r := <-f.replies:
			rd.add(b, ctx, o, r, timeout)
		case <-f.expired:
			expired = true
		case <-ctx.Done():
			expired = true
		}
		if expired {
			// Replies that came in just before count.
			for rd.received < n {
				select {
				case r := <-f.replies:
					rd.add(b, ctx, o, r, timeout)
					continue
				default:
				}
				break
			}
			var why error
			if err := ctx.Err(); err != nil {
				why = fmt.Errorf("no reply before the caller gave up: %w", err)
			} else {
				why = fmt.Errorf("no reply within the node timeout of %v", timeout)
			}
			for i, s := range rd.states {
				if s == pending {
					rd.failed++
					rd.setErr(b, i, why)
				}
			}
			return rd
		}
	}
	return rd
}

// add counts one reply.
func (rd *round) add(b *Backend, ctx context.Context, o op, r reply, timeout time.Duration) {
	rd.received++
	s := outcome(o, r)
	rd.states[r.node] = s
	switch s {
	case yes:
		rd.yes++
	case no:
		rd.no++
		rd.setErr(b, r.node, refusal(o, r.r))
		if o == opAcquire && r.r < 0 {
			if d := time.Duration(-1-r.r) * time.Millisecond; rd.pttl < 0 || d < rd.pttl {
				rd.pttl = d
			}
		}
	case failed:
		rd.failed++
		rd.setErr(b, r.node, nodeErr(ctx, r.err, timeout))
	}
}

func refusal(o op, r int64) error {
	switch {
	case o != opAcquire:
		return errNotOwner
	case r == 0:
		return errHeld
	default:
		return errors.New("held by another owner for " + (time.Duration(-1-r) * time.Millisecond).String())
	}
}

var (
	errNotOwner = errors.New("not held by this owner (expired, or another owner's)")
	errHeld     = errors.New("held by another owner")
)

// nodeErr says that a timeout was the node timeout, not the caller's.
func nodeErr(ctx context.Context, err error, timeout time.Duration) error {
	if ctx.Err() != nil {
		return err
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("no reply within the node timeout of %v: %w", timeout, err)
	}
	return err
}

// setErr records why node i did not confirm. errs is made on the first
// one, so a clean round allocates nothing for it.
func (rd *round) setErr(b *Backend, i int, err error) {
	if rd.errs == nil {
		rd.errs = make([]error, len(b.nodes))
	}
	rd.errs[i] = &NodeError{Node: b.nodes[i].name, Err: err}
}

func (rd *round) quorumErr(b *Backend, o op, name string) *QuorumError {
	e := &QuorumError{Op: o.String(), Lock: name, Confirmed: rd.yes, Needed: b.quorum, Nodes: len(b.nodes)}
	for _, err := range rd.errs {
		if err != nil {
			e.Errs = append(e.Errs, err)
		}
	}
	return e
}

func withCtx(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
		return errors.Join(err, ctxErr)
	}
	return err
}

func handle(g fencer.Grant) (*owner, error) {
	h, ok := g.Handle.(*owner)
	if !ok || h == nil {
		return nil, &fencer.InvalidError{Field: "grant handle", Value: fmt.Sprintf("%T", g.Handle),
			Reason: "it is not a grant of a redlock backend", Accepted: "a Grant returned by this backend's Acquire or Renew"}
	}
	return h, nil
}

// owner is a grant's Handle: its owner value, and the acquire requests that
// were still in flight when Acquire returned at a majority.
type owner struct {
	value string

	mu      sync.Mutex
	f       *fan // nil once settled
	pending int  // replies of f not yet read
}

// settle waits until every acquire request of the grant has been answered
// or has run out of time, so that a release sent afterwards cannot reach a
// node before the acquire's SET and leave a key behind for a whole TTL.
// Normally they have long been answered; a dead node costs at most what is
// left of the node timeout.
func (o *owner) settle(ctx context.Context) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for o.f != nil && o.pending > 0 {
		select {
		case <-o.f.replies:
			o.pending--
		case <-o.f.expired: // every request answered or timed out
			o.pending = 0
		case <-ctx.Done():
			return
		}
	}
	o.f = nil
}
