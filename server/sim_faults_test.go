package server

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// This file is the simulation's seeded fault schedule and its execution.

type simFaultKind int

const (
	fPause       simFaultKind = iota // a node (often the leader) cut from every node and client: the closest to SIGSTOP
	fIsolate                         // a node cut from the other nodes; clients still reach it
	fSplit                           // a minority, with or without the leader, cut from the majority
	fOneWay                          // one direction of one link cut
	fFlaky                           // messages between nodes lost and delayed
	fSlow                            // one node's links slow, perhaps beyond the heartbeat timeout
	fCrash                           // a node crashes and restarts on its data (durable log stores only)
	fTransfer                        // the leader hands leadership over
	fClientPause                     // a client stops sending (a GC pause); its leases run out
	fClientCut                       // a client cannot reach a node
	fClientSlow                      // a client's requests and replies are slow (up to a good part of a TTL)
	fClientCrash                     // a client crashes, abandoning its sessions, and starts afresh later
	fSkew                            // a node's clock rate changes, within the drift budget
)

// simFault is one fault of the schedule. Which node it hits may depend on
// who leads when it starts; the trace says.
type simFault struct {
	at, dur   time.Duration
	kind      simFaultKind
	leader    bool // hit the leader of the moment (and, for a split, its side)
	node      int  // otherwise this node
	peer      int  // the other end of a one-way cut
	client    int
	minority  int  // size of a split's minority
	blackhole bool // cut links swallow messages instead of refusing them
	rate      float64
	delay     time.Duration
	drop      float64

	hit []string // nodes it hit, once applied
}

func (f *simFault) target() string {
	if f.leader {
		return "the leader"
	}
	return fmt.Sprintf("n%d", f.node+1)
}

func (f *simFault) String() string {
	how := "refusing"
	if f.blackhole {
		how = "black-holed"
	}
	var what string
	switch f.kind {
	case fPause:
		what = "pause " + f.target()
	case fIsolate:
		what = fmt.Sprintf("isolate %s from the other nodes (%s)", f.target(), how)
	case fSplit:
		side := "without the leader"
		if f.leader {
			side = "with the leader"
		}
		what = fmt.Sprintf("split: a minority of %d %s (%s)", f.minority, side, how)
	case fOneWay:
		if f.leader {
			what = fmt.Sprintf("cut the leader -> n%d", f.peer+1)
		} else {
			what = fmt.Sprintf("cut n%d -> n%d", f.node+1, f.peer+1)
		}
	case fFlaky:
		what = fmt.Sprintf("flaky network: %.0f%% loss, delays up to %v", 100*f.drop, f.delay)
	case fSlow:
		what = fmt.Sprintf("slow %s: delays up to %v", f.target(), f.delay)
	case fCrash:
		what = fmt.Sprintf("crash %s, restart after", f.target())
	case fTransfer:
		what = "leadership transfer"
	case fClientPause:
		what = fmt.Sprintf("pause client c%d", f.client+1)
	case fClientCut:
		what = fmt.Sprintf("cut client c%d from %s", f.client+1, f.target())
	case fClientSlow:
		what = fmt.Sprintf("slow client c%d: delays up to %v each way", f.client+1, f.delay)
	case fClientCrash:
		what = fmt.Sprintf("crash client c%d, restart after", f.client+1)
	case fSkew:
		what = fmt.Sprintf("n%d's clock rate %+.2f%%", f.node+1, 100*f.rate)
	}
	s := fmt.Sprintf("+%.3fs", f.at.Seconds())
	if f.dur > 0 {
		s += fmt.Sprintf(" for %v", f.dur)
	}
	return s + ": " + what
}

// simGenFaults draws a fault schedule.
func simGenFaults(rng *rand.Rand, p *simParams) []*simFault {
	type weighted struct {
		k simFaultKind
		w int
	}
	kinds := []weighted{
		{fPause, 3}, {fIsolate, 3}, {fSplit, 3}, {fOneWay, 1}, {fFlaky, 2}, {fSlow, 2},
		{fTransfer, 1}, {fClientPause, 2}, {fClientCut, 2}, {fClientSlow, 2}, {fClientCrash, 3}, {fSkew, 1},
	}
	if p.logStore != "memory" {
		kinds = append(kinds, weighted{fCrash, 4})
	}
	total := 0
	for _, k := range kinds {
		total += k.w
	}
	var out []*simFault
	for range 2 + rng.IntN(5) {
		w := rng.IntN(total)
		var kind simFaultKind
		for _, k := range kinds {
			if w -= k.w; w < 0 {
				kind = k.k
				break
			}
		}
		f := &simFault{
			kind:      kind,
			at:        (200*time.Millisecond + time.Duration(rng.Int64N(int64(p.runFor-500*time.Millisecond)))).Round(time.Millisecond),
			dur:       (50*time.Millisecond + time.Duration(rng.Int64N(int64(1500*time.Millisecond)))).Round(time.Millisecond),
			leader:    rng.IntN(3) != 0,
			node:      rng.IntN(p.nodes),
			peer:      rng.IntN(p.nodes),
			client:    rng.IntN(p.clients),
			minority:  1 + rng.IntN((p.nodes-1)/2),
			blackhole: rng.IntN(2) == 0,
		}
		for f.peer == f.node {
			f.peer = rng.IntN(p.nodes)
		}
		switch kind {
		case fFlaky:
			f.drop = 0.05 + 0.25*rng.Float64()
			f.delay = time.Duration(1+rng.IntN(20)) * time.Millisecond
		case fSlow:
			f.delay = time.Duration(5+rng.IntN(4*int(p.heartbeat/time.Millisecond))) * time.Millisecond
		case fClientSlow:
			f.delay = time.Duration(rng.Int64N(int64(p.ttlMin / 2))).Round(time.Millisecond)
		case fTransfer:
			f.dur = 0
		case fClientPause:
			f.dur = (time.Duration(rng.Int64N(int64(2 * p.ttlMax)))).Round(time.Millisecond)
		case fSkew:
			f.dur = 0
			f.leader = false
			f.rate = (2*rng.Float64() - 1) * simRateBudget
		}
		out = append(out, f)
		// A leader change hurts most while a holder cannot renew: often
		// pair one with a client pause or slow client link at once.
		if f.leader && (kind == fPause || kind == fIsolate || kind == fSplit || kind == fCrash) && rng.IntN(2) == 0 {
			g := &simFault{kind: fClientPause, at: f.at, client: rng.IntN(p.clients)}
			if rng.IntN(2) == 0 {
				g.dur = (time.Duration(rng.Int64N(int64(p.ttlMax)))).Round(time.Millisecond)
			} else {
				g.kind = fClientSlow
				g.dur = f.dur
				g.delay = time.Duration(rng.Int64N(int64(p.ttlMin / 2))).Round(time.Millisecond)
			}
			out = append(out, g)
		}
	}
	slices.SortStableFunc(out, func(a, b *simFault) int { return int(a.at - b.at) })
	return out
}

// simAction is the start or the end of a fault.
type simAction struct {
	at   time.Duration
	f    *simFault
	heal bool
}

// runFaults applies the schedule until ctx ends, then ends every fault
// still in force (restarting crashed nodes).
func (r *simRun) runFaults(ctx context.Context) {
	var acts []simAction
	for _, f := range r.p.faults {
		acts = append(acts, simAction{at: f.at, f: f})
		if f.dur > 0 && f.kind != fClientPause && f.kind != fClientCrash {
			acts = append(acts, simAction{at: f.at + f.dur, f: f, heal: true})
		}
	}
	slices.SortStableFunc(acts, func(a, b simAction) int { return int(a.at - b.at) })
	applied := map[*simFault]bool{}
	for _, a := range acts {
		if a.heal && !applied[a.f] {
			continue
		}
		if !a.heal {
			t := time.NewTimer(time.Until(r.hist.t0.Add(a.at)))
			select {
			case <-ctx.Done():
				t.Stop()
				continue // the rest only ends faults in force
			case <-t.C:
			}
		} else if ctx.Err() == nil {
			t := time.NewTimer(time.Until(r.hist.t0.Add(a.at)))
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
		}
		if a.heal {
			r.endFault(a.f)
			delete(applied, a.f)
		} else {
			applied[a.f] = r.startFault(a.f)
		}
	}
}

// pick returns the node a fault hits: the leader of the moment, or its
// fixed node.
func (r *simRun) pick(f *simFault) *simNode {
	if f.leader {
		if l := r.cluster.leader(); l != nil {
			return l
		}
	}
	return r.cluster.nodes[f.node]
}

func (r *simRun) others(ids ...string) []string {
	var out []string
	for _, n := range r.cluster.nodes {
		if !slices.Contains(ids, n.id) {
			out = append(out, n.id)
		}
	}
	return out
}

// startFault applies f and reports whether it must be ended later.
func (r *simRun) startFault(f *simFault) bool {
	c, net, h := r.cluster, r.net, r.hist
	h.stats.faults.Add(1)
	desc := f.String()
	switch f.kind {
	case fPause:
		n := r.pick(f)
		f.hit = []string{n.id}
		net.cutLinks(f.hit, r.others(), true, false)
		for _, cl := range r.clients {
			net.cutClient(cl.id, n.id, false)
		}
	case fIsolate:
		n := r.pick(f)
		f.hit = []string{n.id}
		net.cutLinks(f.hit, r.others(n.id), f.blackhole, false)
	case fSplit:
		ids := simIDs(c.nodes)
		r.faultRng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
		var minority []string
		l := c.leader()
		if f.leader && l != nil {
			minority = append(minority, l.id)
		}
		for _, id := range ids {
			if len(minority) == f.minority {
				break
			}
			if (l == nil || id != l.id) && !slices.Contains(minority, id) {
				minority = append(minority, id)
			}
		}
		f.hit = minority
		net.cutLinks(minority, r.others(minority...), f.blackhole, false)
	case fOneWay:
		from, to := r.pick(f), c.nodes[f.peer]
		if from == to {
			to = c.nodes[(f.peer+1)%len(c.nodes)]
		}
		f.hit = []string{from.id, to.id}
		net.cutOneWay(from.id, to.id, false)
	case fFlaky:
		net.addDrop(f.drop)
		for _, n := range c.nodes {
			net.addSlow(n.id, f.delay/2)
		}
	case fSlow:
		n := r.pick(f)
		f.hit = []string{n.id}
		net.addSlow(n.id, f.delay)
	case fCrash:
		n := r.pick(f)
		if n.server() == nil {
			h.logf("fault %s: %s is down already; skipped", desc, n.id)
			return false
		}
		f.hit = []string{n.id}
		h.logf("fault %s: crash %s", desc, n.id)
		h.stats.crashes.Add(1)
		c.crash(n)
		return true
	case fTransfer:
		l := c.leader()
		if l == nil {
			h.logf("fault %s: no leader; skipped", desc)
			return false
		}
		h.logf("fault %s: %s hands over", desc, l.id)
		if s := l.server(); s != nil {
			err := s.raft.LeadershipTransfer().Error()
			h.logf("leadership transfer from %s: err=%v", l.id, err)
		}
		return false
	case fClientPause:
		r.clients[f.client].pause(f.dur)
	case fClientCrash:
		r.clients[f.client].crashNow(f.dur)
	case fClientCut:
		n := r.pick(f)
		f.hit = []string{n.id}
		net.cutClient(r.clients[f.client].id, n.id, false)
	case fClientSlow:
		net.addClientSlow(r.clients[f.client].id, f.delay)
	case fSkew:
		n := c.nodes[f.node]
		n.clock.setRate(f.rate)
		h.logf("fault %s", desc)
		return false
	}
	h.logf("fault %s: hits %s", desc, strings.Join(f.hit, " "))
	return f.dur > 0
}

// endFault ends f.
func (r *simRun) endFault(f *simFault) {
	net := r.net
	switch f.kind {
	case fPause:
		net.cutLinks(f.hit, r.others(), true, true)
		for _, cl := range r.clients {
			net.cutClient(cl.id, f.hit[0], true)
		}
	case fIsolate:
		net.cutLinks(f.hit, r.others(f.hit...), f.blackhole, true)
	case fSplit:
		net.cutLinks(f.hit, r.others(f.hit...), f.blackhole, true)
	case fOneWay:
		net.cutOneWay(f.hit[0], f.hit[1], true)
	case fFlaky:
		net.addDrop(-f.drop)
		for _, n := range r.cluster.nodes {
			net.addSlow(n.id, -f.delay/2)
		}
	case fSlow:
		net.addSlow(f.hit[0], -f.delay)
	case fCrash:
		n := r.cluster.byID[f.hit[0]]
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := r.cluster.restart(ctx, n)
		cancel()
		if err != nil {
			r.hist.violate(vRestart, "%v", err)
		}
	case fClientCut:
		net.cutClient(r.clients[f.client].id, f.hit[0], true)
	case fClientSlow:
		net.addClientSlow(r.clients[f.client].id, -f.delay)
	}
	r.hist.logf("fault ends: %s", f.String())
}
