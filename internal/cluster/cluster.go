package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fencerlock/fencer/internal/faults/netproxy"
	"github.com/fencerlock/fencer/internal/rpcclient"
	"github.com/fencerlock/fencer/internal/testutil"
)

// Config configures a Cluster. A zero field means its default.
type Config struct {
	// Binary is the path of the fencer binary whose `server` command runs
	// each node. Required.
	Binary string

	// Dir holds each node's data directory (Dir/<id>) and log
	// (Dir/<id>.log). Required; it is created if missing. The caller
	// removes it.
	Dir string

	// Nodes is how many nodes Start starts: 1 to 9. Default 3.
	Nodes int

	// Spares reserves ports, and with Proxies the proxied links, for nodes
	// that AddNode adds later: 0 to 9-Nodes. A cluster without Proxies
	// needs none (AddNode then takes fresh ports); with Proxies AddNode can
	// only add reserved spares, because every node's --raft-peer flags are
	// fixed when it starts. Default 0.
	Spares int

	// Proxies puts a fault-injecting proxy on every Raft link between two
	// nodes, so that Partition can cut them. Default false: nodes dial
	// each other directly.
	Proxies bool

	// HeartbeatTimeout is passed to every node as --heartbeat-timeout: how
	// long a follower waits for the leader before an election. Zero keeps
	// the server's default (1s).
	HeartbeatTimeout time.Duration

	// Logger receives a line for every node start and every fault the
	// cluster injects. Nil discards them.
	Logger *slog.Logger

	// ExtraArgs are appended to every node's `fencer server` command line.
	ExtraArgs []string
}

// MaxNodes is the most nodes, spares included, a Cluster runs.
const MaxNodes = 9

// Status is where a node is in its life.
type Status string

// The statuses of a node.
const (
	StatusSpare   Status = "spare"   // reserved by Config.Spares, never started
	StatusRunning Status = "running" // its process runs
	StatusPaused  Status = "paused"  // its process is stopped by SIGSTOP
	StatusStopped Status = "stopped" // killed or stopped; Restart runs it again
	StatusRemoved Status = "removed" // removed from the cluster by RemoveNode
)

// Node describes one node of a Cluster.
type Node struct {
	ID       string
	Addr     string // client API address (gRPC and JSON over HTTP)
	RaftAddr string // the address the node listens on for Raft
	DataDir  string
	Log      string // path of the node's log file
	Status   Status
}

// Cluster is a fencer server cluster of real processes. Start it with Start
// and stop it with Close. It is safe for concurrent use.
type Cluster struct {
	cfg  Config
	log  *slog.Logger
	part *netproxy.Partition
	hc   *http.Client // for /healthz and /debug/state
	rpc  *http.Client // for the harness's RPCs (h2c)

	mu     sync.Mutex
	nodes  []*node // by ID number; spares included
	closed bool
}

// node is one node's record; its fields after id are guarded by
// Cluster.mu.
type node struct {
	id       string
	addr     string
	raftAddr string
	dir      string
	logPath  string

	args    []string       // the `fencer server` command line of its first start
	reserve []net.Listener // its ports, held until it first starts
	proc    *testutil.Proc
	status  Status
	starts  int
}

func (n *node) info() Node {
	return Node{ID: n.id, Addr: n.addr, RaftAddr: n.raftAddr, DataDir: n.dir, Log: n.logPath, Status: n.status}
}

func (n *node) member() bool {
	return n.status == StatusRunning || n.status == StatusPaused || n.status == StatusStopped
}

// live reports whether the node runs and can answer.
func (n *node) live() bool { return n.status == StatusRunning }

func (cfg *Config) fill() error {
	if cfg.Nodes == 0 {
		cfg.Nodes = 3
	}
	var errs []error
	if cfg.Binary == "" {
		errs = append(errs, errors.New("cluster: Config.Binary is empty; give the path of a fencer binary"))
	} else if fi, err := os.Stat(cfg.Binary); err != nil || fi.IsDir() {
		errs = append(errs, fmt.Errorf("cluster: Config.Binary %q is not a file: %v", cfg.Binary, err))
	}
	if cfg.Dir == "" {
		errs = append(errs, errors.New("cluster: Config.Dir is empty; give a directory for the nodes' data and logs"))
	}
	if cfg.Nodes < 1 || cfg.Spares < 0 || cfg.Nodes+cfg.Spares > MaxNodes {
		errs = append(errs, fmt.Errorf("cluster: Config.Nodes %d and Config.Spares %d; accepted: 1 to %d nodes and spares together", cfg.Nodes, cfg.Spares, MaxNodes))
	}
	if cfg.Proxies && cfg.Nodes+cfg.Spares < 2 {
		errs = append(errs, fmt.Errorf("cluster: Config.Proxies with %d node; proxies need at least two nodes", cfg.Nodes+cfg.Spares))
	}
	if cfg.HeartbeatTimeout < 0 {
		errs = append(errs, fmt.Errorf("cluster: Config.HeartbeatTimeout %v is negative; zero means the server's default", cfg.HeartbeatTimeout))
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return errors.Join(errs...)
}

// Start starts cfg.Nodes nodes: n1 bootstraps, the others join it. It
// returns once a leader is elected and every node is a voting member whose
// client address the cluster knows. ctx bounds the start only; on an error
// everything started is stopped again, and the error carries the nodes'
// log tails.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	c := &Cluster{
		cfg: cfg,
		log: cfg.Logger,
		hc:  &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: 30 * time.Second}},
		rpc: rpcclient.NewHTTPClient(),
	}
	ok := false
	defer func() {
		if !ok {
			c.Close()
		}
	}()
	for i := 1; i <= cfg.Nodes+cfg.Spares; i++ {
		n, err := c.newNode(i)
		if err != nil {
			return nil, err
		}
		if i > cfg.Nodes {
			n.status = StatusSpare
		}
		c.nodes = append(c.nodes, n)
	}
	if cfg.Proxies {
		targets := make(map[string]string, len(c.nodes))
		for _, n := range c.nodes {
			targets[n.id] = n.raftAddr
		}
		p, err := netproxy.NewPartition(targets, nil)
		if err != nil {
			return nil, fmt.Errorf("cluster: raft link proxies: %w", err)
		}
		c.part = p
	}
	first := c.nodes[0]
	var ids []string
	for _, n := range c.nodes[:cfg.Nodes] {
		join := ""
		if n != first {
			join = first.addr
		}
		c.mu.Lock()
		n.args = c.args(n, join)
		err := c.launch(n)
		c.mu.Unlock()
		if err != nil {
			return nil, err
		}
		if err := c.waitHealthy(ctx, n); err != nil {
			return nil, err
		}
		ids = append(ids, n.id)
		if n == first {
			// The others join through n1, which must lead first.
			if err := c.waitMembers(ctx, ids); err != nil {
				return nil, err
			}
		}
	}
	if err := c.waitMembers(ctx, ids); err != nil {
		return nil, err
	}
	ok = true
	return c, nil
}

// newNode reserves the ports of node number i.
func (c *Cluster) newNode(i int) (*node, error) {
	id := "n" + strconv.Itoa(i)
	n := &node{id: id, dir: filepath.Join(c.cfg.Dir, id), logPath: filepath.Join(c.cfg.Dir, id+".log"), status: StatusStopped}
	for _, a := range []*string{&n.addr, &n.raftAddr} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			n.release()
			return nil, fmt.Errorf("cluster: reserve a port for %s: %w", id, err)
		}
		n.reserve = append(n.reserve, ln)
		*a = ln.Addr().String()
	}
	return n, nil
}

// release frees the node's reserved ports.
func (n *node) release() {
	for _, ln := range n.reserve {
		ln.Close()
	}
	n.reserve = nil
}

// args returns the command line of node n's first start, joining the
// cluster at join unless join is empty.
func (c *Cluster) args(n *node, join string) []string {
	a := []string{"server", "--node-id", n.id, "--data-dir", n.dir, "--listen", n.addr, "--raft-listen", n.raftAddr}
	if c.cfg.HeartbeatTimeout > 0 {
		a = append(a, "--heartbeat-timeout", c.cfg.HeartbeatTimeout.String())
	}
	if join != "" {
		a = append(a, "--join", join)
	}
	if c.part != nil {
		for _, peer := range c.nodes {
			if peer == n {
				continue
			}
			proxy, err := c.part.Addr(n.id, peer.id)
			if err != nil {
				panic(err) // every node has an address, so every link exists
			}
			a = append(a, "--raft-peer", peer.id+"="+proxy)
		}
	}
	return append(a, c.cfg.ExtraArgs...)
}

// launch starts node n's process with its command line. c.mu must be held.
func (c *Cluster) launch(n *node) error {
	if c.closed {
		return errClosed
	}
	n.release()
	n.starts++
	if f, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err == nil {
		fmt.Fprintf(f, "=== cluster: start %d of %s at %s: %s %s\n", n.starts, n.id, time.Now().Format(time.RFC3339Nano), c.cfg.Binary, strings.Join(n.args, " "))
		f.Close()
	}
	cmd := exec.Command(c.cfg.Binary, n.args...)
	p, err := testutil.StartProc(c.cfg.Dir, n.id, cmd)
	if err != nil {
		return fmt.Errorf("cluster: start %s: %w", n.id, err)
	}
	n.proc, n.status = p, StatusRunning
	c.log.Info("cluster: node started", "node", n.id, "start", n.starts, "addr", n.addr, "pid", p.Pid())
	return nil
}

var errClosed = errors.New("cluster: closed")

// waitHealthy waits until n serves its client API, or fails with its log
// tail if it exits or ctx ends first.
func (c *Cluster) waitHealthy(ctx context.Context, n *node) error {
	c.mu.Lock()
	p := n.proc
	c.mu.Unlock()
	for {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		err := c.get(rctx, n.addr, "/healthz", nil)
		cancel()
		if err == nil {
			return nil
		}
		if p.Exited() {
			return fmt.Errorf("cluster: %s exited before serving on %s: %v\n%s", n.id, n.addr, p.ExitErr(), tail(n.logPath, 3000))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: %s does not serve on %s: %w\n%s", n.id, n.addr, errors.Join(err, ctx.Err()), tail(n.logPath, 3000))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (c *Cluster) lookup(id string) (*node, error) {
	for _, n := range c.nodes {
		if n.id == id {
			return n, nil
		}
	}
	var ids []string
	for _, n := range c.nodes {
		ids = append(ids, n.id)
	}
	return nil, fmt.Errorf("cluster: no node %q; the nodes are %s", id, strings.Join(ids, ", "))
}

// transition runs fn on node id under the lock after checking that its
// status is one of from.
func (c *Cluster) transition(id, what string, fn func(n *node) error, from ...Status) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return errClosed
	}
	n, err := c.lookup(id)
	if err != nil {
		return err
	}
	if !slices.Contains(from, n.status) {
		return fmt.Errorf("cluster: cannot %s %s: it is %s; accepted only when it is %v", what, id, n.status, from)
	}
	return fn(n)
}

// Kill kills node id with SIGKILL (kill -9) and waits for it to die. Its
// data stays; Restart runs it again.
func (c *Cluster) Kill(id string) error {
	return c.transition(id, "kill", func(n *node) error {
		n.proc.Kill()
		n.status = StatusStopped
		c.log.Info("cluster: node killed", "node", id)
		return nil
	}, StatusRunning, StatusPaused)
}

// Stop stops node id gracefully with SIGTERM (resuming it first if
// paused), and kills it if it has not exited within 15s. It returns once
// the process has exited, with its exit error, if any.
func (c *Cluster) Stop(id string) error {
	var p *testutil.Proc
	err := c.transition(id, "stop", func(n *node) error {
		p = n.proc
		return nil
	}, StatusRunning, StatusPaused)
	if err != nil {
		return err
	}
	// Not under the lock: a graceful stop can take a while. The node counts
	// as running until its process has exited.
	err = p.Stop(15 * time.Second)
	c.exited(id, p)
	c.log.Info("cluster: node stopped", "node", id, "err", err)
	if err != nil {
		return fmt.Errorf("cluster: stop %s: %w", id, err)
	}
	return nil
}

// exited marks node id stopped if p is still its process and it has not
// been stopped or removed meanwhile.
func (c *Cluster) exited(id string, p *testutil.Proc) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n, err := c.lookup(id); err == nil && n.proc == p && (n.status == StatusRunning || n.status == StatusPaused) {
		n.status = StatusStopped
	}
}

// Pause stops node id with SIGSTOP: it keeps its sockets but answers
// nothing, like a process stuck in a long GC pause.
func (c *Cluster) Pause(id string) error {
	return c.transition(id, "pause", func(n *node) error {
		if err := n.proc.Pause(); err != nil {
			return fmt.Errorf("cluster: pause %s: %w", id, err)
		}
		n.status = StatusPaused
		c.log.Info("cluster: node paused", "node", id)
		return nil
	}, StatusRunning)
}

// Resume continues a paused node with SIGCONT.
func (c *Cluster) Resume(id string) error {
	return c.transition(id, "resume", func(n *node) error {
		if err := n.proc.Resume(); err != nil {
			return fmt.Errorf("cluster: resume %s: %w", id, err)
		}
		n.status = StatusRunning
		c.log.Info("cluster: node resumed", "node", id)
		return nil
	}, StatusPaused)
}

// Restart runs a killed or stopped node again with its original command
// line, ports and data directory, and returns once it serves its client
// API. It does not wait for the node to catch up: see WaitConverged.
func (c *Cluster) Restart(ctx context.Context, id string) error {
	var n *node
	err := c.transition(id, "restart", func(nn *node) error {
		n = nn
		return c.launch(n)
	}, StatusStopped)
	if err != nil {
		return err
	}
	return c.waitHealthy(ctx, n)
}

// Nodes returns the cluster's members (running, paused or stopped), by ID.
func (c *Cluster) Nodes() []Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Node
	for _, n := range c.nodes {
		if n.member() {
			out = append(out, n.info())
		}
	}
	return out
}

// Node returns node id, spares and removed nodes included.
func (c *Cluster) Node(id string) (Node, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.lookup(id)
	if err != nil {
		return Node{}, err
	}
	return n.info(), nil
}

// Endpoints returns the client API addresses of the members, by ID,
// including those that are down: a client given them all finds whichever
// leads.
func (c *Cluster) Endpoints() []string {
	var out []string
	for _, n := range c.Nodes() {
		out = append(out, n.Addr)
	}
	return out
}

// URL returns the members as a backend URL: fencer://a,b,c.
func (c *Cluster) URL() string { return "fencer://" + strings.Join(c.Endpoints(), ",") }

// Partition returns the proxies of the Raft links, or nil without
// Config.Proxies. Its nodes are all of the cluster's, spares included;
// Split must place every one of them.
func (c *Cluster) Partition() *netproxy.Partition { return c.part }

// Close kills every node, closes the proxies and waits for all of it. It is
// safe to call more than once.
func (c *Cluster) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	var procs []*testutil.Proc
	for _, n := range c.nodes {
		n.release()
		if n.proc != nil {
			procs = append(procs, n.proc)
		}
		if n.status == StatusRunning || n.status == StatusPaused {
			n.status = StatusStopped
		}
	}
	c.mu.Unlock()
	for _, p := range procs {
		p.Kill()
	}
	var err error
	if c.part != nil {
		err = c.part.Close()
	}
	c.hc.CloseIdleConnections()
	c.rpc.CloseIdleConnections()
	return err
}

// LogTail returns up to the last n bytes of node id's log.
func (c *Cluster) LogTail(id string, n int) string {
	c.mu.Lock()
	nd, err := c.lookup(id)
	c.mu.Unlock()
	if err != nil {
		return err.Error()
	}
	return tail(nd.logPath, n)
}

// Tails returns up to the last n bytes of every started node's log, each
// under a header: for failure messages.
func (c *Cluster) Tails(n int) string {
	c.mu.Lock()
	var nodes []*node
	for _, nd := range c.nodes {
		if nd.starts > 0 {
			nodes = append(nodes, nd)
		}
	}
	c.mu.Unlock()
	var b strings.Builder
	for _, nd := range nodes {
		fmt.Fprintf(&b, "==> %s (%s) <==\n%s\n", nd.id, nd.logPath, tail(nd.logPath, n))
	}
	return b.String()
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	if len(b) > n {
		b = b[len(b)-n:]
		if i := strings.IndexByte(string(b), '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(b)
}
