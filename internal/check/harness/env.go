package harness

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fencerlock/fencer/internal/check/analyze"
	"github.com/fencerlock/fencer/internal/check/procs"
	"github.com/fencerlock/fencer/internal/check/traffic"
	"github.com/fencerlock/fencer/internal/cluster"
	"github.com/fencerlock/fencer/internal/faults/clockfile"
	"github.com/fencerlock/fencer/internal/faults/clockshim"
	"github.com/fencerlock/fencer/internal/faults/netproxy"
	"github.com/fencerlock/fencer/internal/history"
)

// Kind is a lock backend the harness can run.
type Kind string

// The backend kinds.
const (
	KindFencer   Kind = "fencer"   // a fencer server cluster (package cluster)
	KindPostgres Kind = "postgres" // one PostgreSQL server (package pglock)
	KindRedis    Kind = "redis"    // one Redis instance, or a primary and a replica (package redislock)
	KindRedlock  Kind = "redlock"  // N independent Redis masters (package redlock)
)

// Kinds lists the backend kinds.
func Kinds() []Kind { return []Kind{KindFencer, KindPostgres, KindRedis, KindRedlock} }

// Setup is what a run's lock service looks like. The zero value of every
// field but Kind means its default.
type Setup struct {
	// Kind is the backend. Required.
	Kind Kind
	// Nodes is the fencer cluster's size (default 3) or Redlock's number
	// of masters (default 5).
	Nodes int
	// Spares reserves fencer nodes for Env.AddNode.
	Spares int
	// HeartbeatTimeout is the fencer nodes' --heartbeat-timeout; default
	// 500ms, so failovers are quick.
	HeartbeatTimeout time.Duration
	// Replica gives Redis a replica behind a switch, for a failover.
	Replica bool
	// AOF turns on Redis's append-only file with fsync always.
	AOF bool
	// Clocks loads the clock shim into every Redis (for Env.JumpClock); it
	// needs gcc. Fencer nodes always read a clock file.
	Clocks bool
	// Naive, for KindRedis, makes the workers use the naive lock with this
	// fixed value instead of package redislock.
	Naive string
	// Unfenced makes the workers send a constant token, so the store does
	// not fence them (see package traffic). Backends without tokens
	// (Redlock, the naive lock) are always unfenced.
	Unfenced bool
}

// Tokens reports whether the setup's grants carry tokens.
func (s Setup) Tokens() bool { return s.Kind != KindRedlock && s.Naive == "" }

// StoreUnfenced reports whether the workers send a constant token.
func (s Setup) StoreUnfenced() bool { return s.Unfenced || !s.Tokens() }

// TokenScope is the scope in which the setup's tokens must increase.
func (s Setup) TokenScope() analyze.TokenScope {
	if s.Kind == KindFencer || s.Kind == KindPostgres {
		return analyze.TokensGlobal
	}
	return analyze.TokensPerLock
}

func (s *Setup) fill() error {
	switch s.Kind {
	case KindFencer:
		if s.Nodes == 0 {
			s.Nodes = 3
		}
		if s.HeartbeatTimeout == 0 {
			s.HeartbeatTimeout = 500 * time.Millisecond
		}
	case KindRedlock:
		if s.Nodes == 0 {
			s.Nodes = 5
		}
	case KindRedis, KindPostgres:
	default:
		return fmt.Errorf("harness: backend kind %q; accepted: %v", s.Kind, Kinds())
	}
	if s.Naive != "" && s.Kind != KindRedis {
		return fmt.Errorf("harness: the naive lock runs on redis, not %s", s.Kind)
	}
	return nil
}

// Config configures an Env.
type Config struct {
	// Binary is the fencer binary: its server, store and check-worker
	// commands run the processes. Required.
	Binary string
	// Dir is the run's directory: histories, logs and data go there. It
	// is created; the caller removes it.
	Dir string
	// Setup is the lock service.
	Setup Setup
	// Workload is what the workers do with the store; default counter.
	Workload analyze.Workload
	// Seed seeds the proxies' jitter.
	Seed uint64
	// Logger gets a line per process start and fault. Nil discards.
	Logger *slog.Logger
	// ShimDir is where the clock shim is built (Setup.Clocks); default
	// $TMPDIR/fencer-check-shim.
	ShimDir string
	// KeepData keeps the servers' data directories (Raft logs, which
	// preallocate 64 MiB per node, and Redis files) after Close. By
	// default Close removes them and keeps only histories and logs.
	KeepData bool
}

// linkKey names a link: a worker and a server.
type linkKey struct{ from, to string }

func (k linkKey) String() string { return k.from + "→" + k.to }

// Env is one run's processes and faults. See the package documentation.
type Env struct {
	cfg   Config
	log   *slog.Logger
	rec   *history.Recorder
	store *procs.Store

	cluster *cluster.Cluster
	clocks  *clockfile.File
	redis   map[string]*procs.Redis // by name
	rnames  []string                // the lock service's Redis nodes, in order
	shims   map[string]*clockshim.Offset
	pg      *procs.Postgres
	vip     *netproxy.Proxy // redis with a replica: the switch clients reach the primary through
	repl    *netproxy.Proxy // replica → primary link

	mu       sync.Mutex
	workers  map[string]*worker
	links    map[linkKey]*netproxy.Proxy
	faults   map[faultKey]uint64 // active faults → their op
	errs     []error             // worker failures
	closed   bool
	seedStep uint64
}

// Start starts the lock service, the store and the harness's history.
// ctx bounds the start. On error everything started is stopped again.
func Start(ctx context.Context, cfg Config) (*Env, error) {
	if cfg.Binary == "" || cfg.Dir == "" {
		return nil, errors.New("harness: Config.Binary and Config.Dir are required")
	}
	if err := cfg.Setup.fill(); err != nil {
		return nil, err
	}
	if cfg.Workload == "" {
		cfg.Workload = analyze.WorkloadCounter
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ShimDir == "" {
		cfg.ShimDir = filepath.Join(os.TempDir(), "fencer-check-shim")
	}
	for _, d := range []string{"history", "logs"} {
		if err := os.MkdirAll(filepath.Join(cfg.Dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("harness: %w", err)
		}
	}
	e := &Env{
		cfg:     cfg,
		log:     cfg.Logger,
		redis:   map[string]*procs.Redis{},
		shims:   map[string]*clockshim.Offset{},
		workers: map[string]*worker{},
		links:   map[linkKey]*netproxy.Proxy{},
		faults:  map[faultKey]uint64{},
	}
	var err error
	if e.rec, err = history.Create(filepath.Join(cfg.Dir, "history", "nemesis.jsonl"), &history.Options{Process: "nemesis"}); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			e.Close()
		}
	}()
	if e.store, err = procs.StartStore(ctx, cfg.Binary, filepath.Join(cfg.Dir, "logs")); err != nil {
		return nil, err
	}
	switch cfg.Setup.Kind {
	case KindFencer:
		err = e.startFencer(ctx)
	case KindPostgres:
		e.pg, err = procs.StartPostgres(ctx, filepath.Join(cfg.Dir, "logs"))
	case KindRedis, KindRedlock:
		err = e.startRedis(ctx)
	}
	if err != nil {
		return nil, err
	}
	ok = true
	return e, nil
}

func (e *Env) startFencer(ctx context.Context) error {
	s := e.cfg.Setup
	var err error
	if e.clocks, err = clockfile.Create(filepath.Join(e.cfg.Dir, "clocks")); err != nil {
		return err
	}
	e.cluster, err = cluster.Start(ctx, cluster.Config{
		Binary:           e.cfg.Binary,
		Dir:              filepath.Join(e.cfg.Dir, "cluster"),
		Nodes:            s.Nodes,
		Spares:           s.Spares,
		Proxies:          true,
		HeartbeatTimeout: s.HeartbeatTimeout,
		Logger:           e.log,
		ExtraArgs:        []string{"--clock-file", e.clocks.Path()},
	})
	if err != nil {
		return fmt.Errorf("harness: start the fencer cluster: %w", err)
	}
	return nil
}

func (e *Env) startRedis(ctx context.Context) error {
	s := e.cfg.Setup
	dir := filepath.Join(e.cfg.Dir, "redis")
	var so string
	if s.Clocks {
		var err error
		if so, err = clockshim.Build(ctx, e.cfg.ShimDir); err != nil {
			return fmt.Errorf("harness: the clock jump needs the clock shim: %w", err)
		}
	}
	start := func(name string, opts procs.RedisOptions) error {
		if s.Clocks {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			off, err := clockshim.NewOffset(filepath.Join(dir, "clock-"+name))
			if err != nil {
				return err
			}
			e.shims[name] = off
			opts.Env = off.Env(so)
		}
		opts.AOF = s.AOF
		r, err := procs.StartRedis(ctx, dir, name, opts)
		if err != nil {
			return err
		}
		e.redis[name] = r
		e.log.Info("harness: redis started", "node", name, "addr", r.Addr)
		return nil
	}
	switch {
	case s.Kind == KindRedlock:
		for i := 1; i <= s.Nodes; i++ {
			name := fmt.Sprintf("r%d", i)
			if err := start(name, procs.RedisOptions{}); err != nil {
				return err
			}
			e.rnames = append(e.rnames, name)
		}
	case s.Replica:
		if err := start("primary", procs.RedisOptions{}); err != nil {
			return err
		}
		var err error
		// The replica reaches the primary through a proxy, so the harness
		// can hold the replication stream back.
		if e.repl, err = netproxy.New(e.redis["primary"].Addr, nil); err != nil {
			return err
		}
		if err := start("replica", procs.RedisOptions{ReplicaOf: e.repl.Addr()}); err != nil {
			return err
		}
		if err := e.redis["replica"].WaitReplicaSynced(ctx); err != nil {
			return err
		}
		if e.vip, err = netproxy.New(e.redis["primary"].Addr, nil); err != nil {
			return err
		}
		e.rnames = []string{"primary"}
	default:
		if err := start("redis", procs.RedisOptions{}); err != nil {
			return err
		}
		e.rnames = []string{"redis"}
	}
	return nil
}

// Setup returns the run's setup, defaults filled in.
func (e *Env) Setup() Setup { return e.cfg.Setup }

// Kind returns the run's backend kind.
func (e *Env) Kind() Kind { return e.cfg.Setup.Kind }

// Dir returns the run's directory.
func (e *Env) Dir() string { return e.cfg.Dir }

// Cluster returns the fencer cluster, or nil for other backends.
func (e *Env) Cluster() *cluster.Cluster { return e.cluster }

// Nodes returns the names of the lock service's nodes: the fencer
// cluster's members, Redlock's masters, the Redis primary (or single
// instance), or "postgres".
func (e *Env) Nodes() []string {
	switch e.Kind() {
	case KindFencer:
		var ids []string
		for _, n := range e.cluster.Nodes() {
			ids = append(ids, n.ID)
		}
		return ids
	case KindPostgres:
		return []string{"postgres"}
	}
	return slices.Clone(e.rnames)
}

// Logf logs a progress line of the scenario.
func (e *Env) Logf(format string, a ...any) { e.log.Info(fmt.Sprintf(format, a...)) }

// Close stops every process and proxy of the run and waits for them. It is
// safe to call more than once.
func (e *Env) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	ws := make([]*worker, 0, len(e.workers))
	for _, w := range e.workers {
		ws = append(ws, w)
	}
	links := make([]*netproxy.Proxy, 0, len(e.links))
	for _, p := range e.links {
		links = append(links, p)
	}
	e.mu.Unlock()
	var errs []error
	for _, w := range ws {
		w.kill()
	}
	for _, p := range links {
		errs = append(errs, p.Close())
	}
	if e.cluster != nil {
		errs = append(errs, e.cluster.Close())
	}
	for _, p := range []*netproxy.Proxy{e.vip, e.repl} {
		if p != nil {
			errs = append(errs, p.Close())
		}
	}
	for _, r := range e.redis {
		errs = append(errs, r.Close())
	}
	if e.pg != nil {
		errs = append(errs, e.pg.Close())
	}
	if e.store != nil {
		errs = append(errs, e.store.Close())
	}
	if e.rec != nil {
		if err := e.rec.Close(); err != nil && !errors.Is(err, history.ErrClosed) {
			errs = append(errs, err)
		}
	}
	if !e.cfg.KeepData {
		errs = append(errs, e.removeData())
	}
	return errors.Join(errs...)
}

// removeData removes the servers' data directories, keeping their logs.
func (e *Env) removeData() error {
	var errs []error
	if e.cluster != nil {
		for _, id := range e.allNodeIDs() {
			n, err := e.cluster.Node(id)
			if err == nil && n.DataDir != "" {
				errs = append(errs, os.RemoveAll(n.DataDir))
			}
		}
	}
	for _, r := range e.redis {
		errs = append(errs, os.RemoveAll(r.Dir)) // its log is next to it
	}
	return errors.Join(errs...)
}

// allNodeIDs returns the IDs of every fencer node, spares and removed
// nodes included.
func (e *Env) allNodeIDs() []string {
	var ids []string
	for i := 1; i <= cluster.MaxNodes; i++ {
		id := fmt.Sprintf("n%d", i)
		if _, err := e.cluster.Node(id); err == nil {
			ids = append(ids, id)
		}
	}
	return ids
}

// record writes a harness event; a failure is kept for Collect.
func (e *Env) record(ev history.Event) {
	if err := e.rec.Record(ev); err != nil && !errors.Is(err, history.ErrClosed) {
		e.mu.Lock()
		e.errs = append(e.errs, fmt.Errorf("harness: record %s: %w", ev.Kind, err))
		e.mu.Unlock()
	}
}

// faultKey identifies an active fault.
type faultKey struct{ kind, target string }

// isLink reports whether the fault is on a link (its target is from→to).
func (k faultKey) isLink() bool { return strings.Contains(k.target, "→") }

// faultStart records the start of a fault of kind on target, unless one of
// that kind is already active there.
func (e *Env) faultStart(kind, target string, attrs map[string]string) {
	key := faultKey{kind, target}
	e.mu.Lock()
	if _, active := e.faults[key]; active {
		e.mu.Unlock()
		return
	}
	op := e.rec.NextOp()
	e.faults[key] = op
	e.mu.Unlock()
	a := map[string]string{analyze.AttrFault: kind, analyze.AttrTarget: target}
	for k, v := range attrs {
		a[k] = v
	}
	e.record(history.Event{Op: op, Kind: history.FaultStart, Attrs: a})
	e.log.Info("harness: fault", "fault", kind, "target", target, "attrs", attrs)
}

// faultEnd records the end of the active fault of kind on target, if any.
func (e *Env) faultEnd(kind, target string) {
	key := faultKey{kind, target}
	e.mu.Lock()
	op, active := e.faults[key]
	delete(e.faults, key)
	e.mu.Unlock()
	if !active {
		return
	}
	e.record(history.Event{Op: op, Kind: history.FaultEnd, Attrs: map[string]string{analyze.AttrFault: kind, analyze.AttrTarget: target}})
	e.log.Info("harness: fault healed", "fault", kind, "target", target)
}

// activeFaults returns the active faults, sorted.
func (e *Env) activeFaults() []faultKey {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []faultKey
	for k := range e.faults {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].kind != out[j].kind {
			return out[i].kind < out[j].kind
		}
		return out[i].target < out[j].target
	})
	return out
}

// Sleep waits d or until ctx ends, and returns ctx's error then.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// lockURL returns the backend URL worker name uses, through its own
// proxies, and for a fencer:// URL the worker's routes (traffic.Config.Via).
func (e *Env) lockURL(ctx context.Context, name string) (string, map[string]string, error) {
	s := e.cfg.Setup
	switch s.Kind {
	case KindFencer:
		// The URL names the nodes' own client addresses, and the worker
		// dials each through its proxy of that link: a follower's redirect
		// names the leader's own address, which the routes send through
		// the worker's proxy too. The leader first, so that the first
		// connection goes to it.
		nodes := e.cluster.Nodes()
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		leader, _ := e.cluster.Leader(lctx)
		cancel()
		sort.SliceStable(nodes, func(i, j int) bool { return nodes[i].ID == leader && nodes[j].ID != leader })
		var addrs []string
		via := map[string]string{}
		for _, n := range nodes {
			p, err := e.link(name, n.ID)
			if err != nil {
				return "", nil, err
			}
			addrs = append(addrs, n.Addr)
			via[n.Addr] = p.Addr()
		}
		return "fencer://" + strings.Join(addrs, ","), via, nil
	case KindPostgres:
		p, err := e.link(name, "postgres")
		if err != nil {
			return "", nil, err
		}
		return e.pg.URLAt(p.Addr()), nil, nil
	case KindRedlock:
		var addrs []string
		for _, n := range e.rnames {
			p, err := e.link(name, n)
			if err != nil {
				return "", nil, err
			}
			addrs = append(addrs, p.Addr())
		}
		return "redlock://" + strings.Join(addrs, ","), nil, nil
	}
	p, err := e.link(name, e.rnames[0])
	if err != nil {
		return "", nil, err
	}
	if s.Naive != "" {
		return traffic.NaiveScheme + "://" + p.Addr() + "?value=" + s.Naive, nil, nil
	}
	return "redis://" + p.Addr(), nil, nil
}

// target returns the address a link to the named server forwards to.
func (e *Env) target(to string) (string, error) {
	switch {
	case to == "store":
		return e.store.Addr, nil
	case to == "postgres" && e.pg != nil:
		return e.pg.Addr, nil
	case to == "primary" && e.vip != nil:
		return e.vip.Addr(), nil
	case e.redis[to] != nil:
		return e.redis[to].Addr, nil
	case e.cluster != nil:
		n, err := e.cluster.Node(to)
		if err != nil {
			return "", err
		}
		return n.Addr, nil
	}
	return "", fmt.Errorf("harness: no server %q in this run; the servers are store and %s", to, strings.Join(e.Nodes(), ", "))
}

// link returns the proxy of the link from→to, creating it on first use.
func (e *Env) link(from, to string) (*netproxy.Proxy, error) {
	k := linkKey{from, to}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, errors.New("harness: closed")
	}
	if p := e.links[k]; p != nil {
		return p, nil
	}
	addr, err := e.target(to)
	if err != nil {
		return nil, err
	}
	e.seedStep++
	p, err := netproxy.New(addr, &netproxy.Options{Seed: e.cfg.Seed + e.seedStep})
	if err != nil {
		return nil, fmt.Errorf("harness: proxy for %s: %w", k, err)
	}
	e.links[k] = p
	return p, nil
}
