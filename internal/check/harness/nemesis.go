package harness

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/fencerlock/fencer/internal/check/analyze"
	"github.com/fencerlock/fencer/internal/faults/netproxy"
	"github.com/fencerlock/fencer/internal/history"
)

// The fault kinds the harness records (AttrFault of fault events), besides
// analyze.FaultKill.
const (
	FaultPartition       = "partition"
	FaultClockJump       = "clock-jump"
	FaultClockSkew       = "clock-skew"
	FaultReplicationHold = "replication-hold"
	FaultFailover        = "failover"
	FaultCrashRestart    = "crash-restart"
	FaultAddNode         = "add-node"
	FaultRemoveNode      = "remove-node"
)

// isNode reports whether name is a fencer node.
func (e *Env) isNode(name string) bool {
	if e.cluster == nil {
		return false
	}
	_, err := e.cluster.Node(name)
	return err == nil
}

// Pause stops process name (a worker, a fencer node or a Redis node) with
// SIGSTOP and records the pause.
func (e *Env) Pause(name string) error {
	e.record(history.Event{Process: name, Kind: history.Pause})
	e.log.Info("harness: pause", "process", name)
	switch {
	case e.isWorker(name):
		w, _ := e.worker(name)
		return w.current().Pause()
	case e.isNode(name):
		return e.cluster.Pause(name)
	case e.redis[name] != nil:
		return e.redis[name].Proc().Pause()
	}
	return fmt.Errorf("harness: cannot pause %q: no such worker or node", name)
}

// Resume continues process name with SIGCONT and records the resume: a
// process Pause stopped, or a worker stopped by a failpoint.
func (e *Env) Resume(name string) error {
	switch {
	case e.isWorker(name):
		w, _ := e.worker(name)
		e.resumeProcess(name, w.current())
		return nil
	case e.isNode(name):
		e.record(history.Event{Process: name, Kind: history.Resume})
		e.log.Info("harness: resumed", "process", name)
		return e.cluster.Resume(name)
	case e.redis[name] != nil:
		e.resumeProcess(name, e.redis[name].Proc())
		return nil
	}
	return fmt.Errorf("harness: cannot resume %q: no such worker or node", name)
}

// Kill kills process name with SIGKILL (a worker, a fencer node, a Redis
// node) and records the fault; Restart ends it.
func (e *Env) Kill(name string) error {
	e.faultStart(analyze.FaultKill, name, nil)
	switch {
	case e.isWorker(name):
		w, _ := e.worker(name)
		w.kill()
		return nil
	case e.isNode(name):
		return e.cluster.Kill(name)
	case e.redis[name] != nil:
		e.redis[name].Kill()
		return nil
	}
	return fmt.Errorf("harness: cannot kill %q: no such worker or node", name)
}

// Restart starts a killed process again: a worker as its next incarnation
// (a new history file, the same spec), a fencer node from its data
// directory, a Redis node on its port and directory (empty, unless AOF).
func (e *Env) Restart(ctx context.Context, name string) error {
	defer e.faultEnd(analyze.FaultKill, name)
	switch {
	case e.isWorker(name):
		w, _ := e.worker(name)
		return e.launch(ctx, w)
	case e.isNode(name):
		return e.cluster.Restart(ctx, name)
	case e.redis[name] != nil:
		return e.redis[name].Restart(ctx)
	}
	return fmt.Errorf("harness: cannot restart %q: no such worker or node", name)
}

// CrashRestart kills Redis node name with SIGKILL and starts it again at
// once: without AOF it has forgotten every key it held.
func (e *Env) CrashRestart(ctx context.Context, name string) error {
	r := e.redis[name]
	if r == nil {
		return fmt.Errorf("harness: no Redis node %q", name)
	}
	e.faultStart(FaultCrashRestart, name, map[string]string{"aof": fmt.Sprint(e.cfg.Setup.AOF)})
	defer e.faultEnd(FaultCrashRestart, name)
	return r.Restart(ctx)
}

// linkFaultKind names a link fault for the timeline.
func linkFaultKind(f netproxy.Fault) string {
	switch {
	case f == netproxy.Cut():
		return "cut"
	case f.Conns == netproxy.ConnsReset:
		return "reset"
	case f.Conns == netproxy.ConnsDrop:
		return f.String()
	case f.Up == f.Down:
		return f.Up.String()
	case f.Down.Mode == netproxy.ModePass && f.Conns == netproxy.ConnsAccept:
		return f.Up.String() + " up"
	case f.Up.Mode == netproxy.ModePass && f.Conns == netproxy.ConnsAccept:
		return f.Down.String() + " down"
	}
	return f.String()
}

// SetLink sets the fault of link from→to (see the package documentation
// for names) and records it; a healthy Fault (netproxy.Fault{}) heals the
// link.
func (e *Env) SetLink(from, to string, f netproxy.Fault) error {
	p, err := e.link(from, to)
	if err != nil {
		return err
	}
	target := linkKey{from, to}.String()
	if err := p.Set(f); err != nil {
		return err
	}
	for _, k := range e.activeFaults() {
		if k.target == target {
			e.faultEnd(k.kind, target)
		}
	}
	if f != (netproxy.Fault{}) {
		e.faultStart(linkFaultKind(f), target, map[string]string{"link_fault": f.String()})
	}
	return nil
}

// Isolate cuts fencer node id off from every other node (Raft links only;
// clients still reach it) and records the partition.
func (e *Env) Isolate(id string) error {
	if e.cluster == nil {
		return fmt.Errorf("harness: partitions need the fencer backend, not %s", e.Kind())
	}
	if err := e.cluster.Partition().Isolate(id); err != nil {
		return err
	}
	e.faultStart(FaultPartition, id, nil)
	return nil
}

// Split cuts the fencer nodes into groups (every node in one group).
func (e *Env) Split(groups ...[]string) error {
	if e.cluster == nil {
		return fmt.Errorf("harness: partitions need the fencer backend, not %s", e.Kind())
	}
	if err := e.cluster.Partition().Split(groups...); err != nil {
		return err
	}
	var parts []string
	for _, g := range groups {
		parts = append(parts, strings.Join(g, ","))
	}
	e.faultStart(FaultPartition, strings.Join(parts, "|"), nil)
	return nil
}

// Heal heals every partition between fencer nodes.
func (e *Env) Heal() error {
	if e.cluster == nil {
		return nil
	}
	if err := e.cluster.Partition().Heal(); err != nil {
		return err
	}
	for _, k := range e.activeFaults() {
		if k.kind == FaultPartition {
			e.faultEnd(k.kind, k.target)
		}
	}
	return nil
}

// JumpClock sets the wall clock of node name (a Redis node with the clock
// shim, or a fencer node) to real time + offset; an offset of 0 ends the
// jump.
func (e *Env) JumpClock(name string, offset time.Duration) error {
	switch {
	case e.shims[name] != nil:
		if err := e.shims[name].Set(offset); err != nil {
			return err
		}
	case e.isNode(name):
		if err := e.clocks.Set(name, offset, e.clocks.Get(name).Rate); err != nil {
			return err
		}
	default:
		return fmt.Errorf("harness: cannot jump the clock of %q: only fencer nodes and Redis nodes of a run with Setup.Clocks have a settable clock", name)
	}
	if offset == 0 {
		e.faultEnd(FaultClockJump, name)
	} else {
		e.faultEnd(FaultClockJump, name)
		e.faultStart(FaultClockJump, name, map[string]string{"offset": offset.String()})
	}
	return nil
}

// SkewClock makes fencer node id's clock run at rate real seconds per
// second; rate 1 ends the skew.
func (e *Env) SkewClock(id string, rate float64) error {
	if !e.isNode(id) {
		return fmt.Errorf("harness: cannot skew the clock of %q: only fencer nodes have a clock file", id)
	}
	if err := e.clocks.Set(id, e.clocks.Get(id).Offset, rate); err != nil {
		return err
	}
	e.faultEnd(FaultClockSkew, id)
	if rate != 1 {
		e.faultStart(FaultClockSkew, id, map[string]string{"rate": fmt.Sprint(rate)})
	}
	return nil
}

// HoldReplication holds back the replication stream from the Redis
// primary to its replica: what the primary acknowledges from now on stays
// on the primary.
func (e *Env) HoldReplication() error {
	if e.repl == nil {
		return fmt.Errorf("harness: no replica to hold back (Setup.Replica is off)")
	}
	if err := e.repl.Set(netproxy.Hold(netproxy.Down)); err != nil {
		return err
	}
	e.faultStart(FaultReplicationHold, "replica", nil)
	return nil
}

// Failover kills the Redis primary with SIGKILL, promotes its replica
// (REPLICAOF NO ONE) and moves the switch the clients reach the primary
// through to it, as Sentinel or an operator would.
func (e *Env) Failover(ctx context.Context) error {
	primary, replica := e.redis["primary"], e.redis["replica"]
	if primary == nil || replica == nil {
		return fmt.Errorf("harness: no primary and replica (Setup.Replica is off)")
	}
	e.faultStart(FaultFailover, "primary", nil)
	defer e.faultEnd(FaultFailover, "primary")
	primary.Kill()
	if _, err := replica.Do(ctx, "REPLICAOF", "NO", "ONE"); err != nil {
		return fmt.Errorf("harness: promote the replica: %w", err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	addr := e.vip.Addr()
	if err := e.vip.Close(); err != nil {
		return err
	}
	vip, err := netproxy.New(replica.Addr, &netproxy.Options{ListenAddr: addr})
	if err != nil {
		return fmt.Errorf("harness: move the switch to the replica: %w", err)
	}
	e.vip = vip
	return nil
}

// Leader returns the fencer cluster's leader, waiting up to 15 s for one.
func (e *Env) Leader(ctx context.Context) (string, error) {
	if e.cluster == nil {
		return "", fmt.Errorf("harness: no leader: the backend is %s", e.Kind())
	}
	lctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	return e.cluster.Leader(lctx)
}

// Followers returns the fencer cluster's running members other than
// leader.
func (e *Env) Followers(leader string) []string {
	var out []string
	for _, n := range e.cluster.Nodes() {
		if n.ID != leader && n.Status == "running" {
			out = append(out, n.ID)
		}
	}
	return out
}

// AddNode adds a spare fencer node to the cluster and returns its ID.
func (e *Env) AddNode(ctx context.Context) (string, error) {
	e.faultStart(FaultAddNode, "cluster", nil)
	defer e.faultEnd(FaultAddNode, "cluster")
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	id, err := e.cluster.AddNode(actx)
	if err == nil {
		e.log.Info("harness: node added", "node", id)
	}
	return id, err
}

// RemoveNode removes fencer node id from the cluster and stops it.
func (e *Env) RemoveNode(ctx context.Context, id string) error {
	e.faultStart(FaultRemoveNode, id, nil)
	defer e.faultEnd(FaultRemoveNode, id)
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return e.cluster.RemoveNode(rctx, id)
}

// WaitHeld waits until the link from→to holds back at least one byte
// going up (a request caught by a Hold fault), or ctx ends.
func (e *Env) WaitHeld(ctx context.Context, from, to string) error {
	p, err := e.link(from, to)
	if err != nil {
		return err
	}
	for p.Stats().Up.Buffered == 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("harness: nothing is held on %s→%s: %w", from, to, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}
