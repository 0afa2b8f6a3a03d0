package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fencerlock/fencer/internal/api/fencerv1"
	"github.com/fencerlock/fencer/internal/rpcclient"
	"github.com/fencerlock/fencer/server"
)

// requestTimeout bounds each of the harness's own calls to one node, so a
// paused or partitioned node cannot hold a wait up.
const requestTimeout = 2 * time.Second

// pollInterval is how often waits look again.
const pollInterval = 20 * time.Millisecond

// get fetches http://addr/path and decodes its JSON body into out, if out
// is not nil.
func (c *Cluster) get(ctx context.Context, addr, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s%s: %s: %s", addr, path, resp.Status, strings.TrimSpace(string(body)))
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("GET %s%s: %w", addr, path, err)
	}
	return nil
}

// liveNodes returns the running members.
func (c *Cluster) liveNodes() []*node {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*node
	for _, n := range c.nodes {
		if n.member() && n.live() {
			out = append(out, n)
		}
	}
	return out
}

// States returns the own view (GET /debug/state) of every running member,
// by ID. Paused and stopped nodes are left out. A node that does not answer
// within a short timeout is left out too, and named in the error, which
// joins one error per such node; the states of the others are returned
// with it.
func (c *Cluster) States(ctx context.Context) ([]server.NodeState, error) {
	nodes := c.liveNodes()
	states := make([]server.NodeState, len(nodes))
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			rctx, cancel := context.WithTimeout(ctx, requestTimeout)
			defer cancel()
			if err := c.get(rctx, n.addr, "/debug/state", &states[i]); err != nil {
				errs[i] = fmt.Errorf("%s: %w", n.id, err)
			}
		})
	}
	wg.Wait()
	var out []server.NodeState
	for i := range nodes {
		if errs[i] == nil {
			out = append(out, states[i])
		}
	}
	return out, errors.Join(errs...)
}

// Leader returns the ID of the node that leads, once exactly one running
// node says it leads (and has caught up). While a deposed leader has not
// noticed yet, two nodes may say so; Leader waits until ctx ends for that
// to settle.
func (c *Cluster) Leader(ctx context.Context) (string, error) {
	for {
		states, err := c.States(ctx)
		var leaders []string
		for _, s := range states {
			if s.Leader {
				leaders = append(leaders, s.NodeID)
			}
		}
		if len(leaders) == 1 {
			return leaders[0], nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("cluster: no single leader: %d running nodes say they lead %v (states %s; errors: %v): %w",
				len(leaders), leaders, formatStates(states), err, ctx.Err())
		case <-time.After(pollInterval):
		}
	}
}

// WaitConverged waits until every running member answers and all have
// applied the same log index, with the same state hash and last token. The
// cluster must be quiet for that: stop the workload first. Paused and
// stopped nodes are not waited for.
func (c *Cluster) WaitConverged(ctx context.Context) error {
	for {
		if len(c.liveNodes()) == 0 {
			return errors.New("cluster: no running node to compare")
		}
		states, err := c.States(ctx)
		if err == nil && converged(states) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: replicas did not converge: last states %s (errors: %v): %w", formatStates(states), err, ctx.Err())
		case <-time.After(pollInterval):
		}
	}
}

func converged(states []server.NodeState) bool {
	if len(states) == 0 {
		return false
	}
	for _, s := range states[1:] {
		if s.AppliedIndex != states[0].AppliedIndex || s.Hash != states[0].Hash || s.LastToken != states[0].LastToken {
			return false
		}
	}
	return true
}

func formatStates(states []server.NodeState) string {
	var parts []string
	for _, s := range states {
		role := "follower"
		if s.Leader {
			role = "leader"
		}
		parts = append(parts, fmt.Sprintf("%s(%s applied=%d commit=%d hash=%s last_token=%d)", s.NodeID, role, s.AppliedIndex, s.CommitIndex, s.Hash, s.LastToken))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// conn returns a connection to the running members, or an error if none
// runs. The caller closes it.
func (c *Cluster) conn() (*rpcclient.Conn, error) {
	var eps []string
	for _, n := range c.liveNodes() {
		eps = append(eps, n.addr)
	}
	if len(eps) == 0 {
		return nil, errors.New("cluster: no running member to ask")
	}
	return rpcclient.New(rpcclient.Config{Endpoints: eps, HTTPClient: c.rpc}), nil
}

// waitMembers waits until the leader's Members lists exactly want as
// voters, each with its client address, and names a leader.
func (c *Cluster) waitMembers(ctx context.Context, want []string) error {
	want = slices.Sorted(slices.Values(want))
	var last string
	for {
		conn, err := c.conn()
		if err != nil {
			return err
		}
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		resp, err := conn.Members(rctx, &fencerv1.MembersRequest{})
		cancel()
		conn.Close()
		if err == nil {
			if last = membersDiff(resp, want); last == "" {
				return nil
			}
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: waiting for members %v: %s: %w\n%s", want, last, ctx.Err(), c.Tails(2000))
		case <-time.After(pollInterval):
		}
	}
}

// membersDiff says how resp differs from want, or returns "".
func membersDiff(resp *fencerv1.MembersResponse, want []string) string {
	if resp.LeaderId == "" {
		return "no leader"
	}
	var have []string
	for _, m := range resp.Members {
		switch {
		case m.Role == "nonvoter":
			return m.Id + " is not a voter yet"
		case m.ClientAddress == "":
			return m.Id + " has not registered its client address yet"
		}
		have = append(have, m.Id)
	}
	sort.Strings(have)
	if !slices.Equal(have, want) {
		return fmt.Sprintf("members are %v", have)
	}
	return ""
}

// memberIDs returns the IDs of the members, except skip.
func (c *Cluster) memberIDs(skip string) []string {
	var ids []string
	for _, n := range c.Nodes() {
		if n.ID != skip {
			ids = append(ids, n.ID)
		}
	}
	return ids
}

// AddNode starts a new node that joins the cluster through a running
// member, and returns its ID once it is a voting member. With Proxies it
// takes the next spare reserved by Config.Spares.
func (c *Cluster) AddNode(ctx context.Context) (string, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return "", errClosed
	}
	var n *node
	for _, nd := range c.nodes {
		if nd.status == StatusSpare {
			n = nd
			break
		}
	}
	if n == nil {
		switch {
		case c.part != nil:
			c.mu.Unlock()
			return "", errors.New("cluster: no spare node left; a cluster with Proxies adds only the spares reserved by Config.Spares")
		case len(c.nodes) >= MaxNodes:
			c.mu.Unlock()
			return "", fmt.Errorf("cluster: already %d nodes, the most a cluster runs", MaxNodes)
		}
		nd, err := c.newNode(len(c.nodes) + 1)
		if err != nil {
			c.mu.Unlock()
			return "", err
		}
		n = nd
		c.nodes = append(c.nodes, n)
	}
	join := ""
	for _, nd := range c.nodes {
		if nd.member() && nd.live() {
			join = nd.addr
			break
		}
	}
	if join == "" {
		c.mu.Unlock()
		return "", errors.New("cluster: no running member to join through")
	}
	n.args = c.args(n, join)
	err := c.launch(n)
	c.mu.Unlock()
	if err != nil {
		return "", err
	}
	if err := c.waitHealthy(ctx, n); err != nil {
		return "", err
	}
	if err := c.waitMembers(ctx, c.memberIDs("")); err != nil {
		return "", err
	}
	return n.id, nil
}

// RemoveNode removes node id from the cluster (the Remove RPC, sent to the
// leader), waits until the leader no longer lists it, and then stops its
// process. Its data directory and log stay.
func (c *Cluster) RemoveNode(ctx context.Context, id string) error {
	c.mu.Lock()
	n, err := c.lookup(id)
	if err == nil && !n.member() {
		err = fmt.Errorf("cluster: cannot remove %s: it is %s, not a member", id, n.status)
	}
	c.mu.Unlock()
	if err != nil {
		return err
	}
	conn, err := c.conn()
	if err != nil {
		return err
	}
	_, err = conn.Remove(ctx, &fencerv1.RemoveRequest{Id: id})
	conn.Close()
	if err != nil {
		return fmt.Errorf("cluster: remove %s: %w", id, err)
	}
	if err := c.waitMembers(ctx, c.memberIDs(id)); err != nil {
		return err
	}
	c.mu.Lock()
	p, running := n.proc, n.status == StatusRunning || n.status == StatusPaused
	c.mu.Unlock()
	c.log.Info("cluster: node removed", "node", id)
	if running {
		err = p.Stop(15 * time.Second)
	}
	c.mu.Lock()
	n.status = StatusRemoved
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("cluster: stop removed node %s: %w", id, err)
	}
	return nil
}
