package netproxy

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
)

// PartitionOptions configure a Partition. The zero value (or nil) gives the
// defaults.
type PartitionOptions struct {
	// Proxy configures every link's proxy. ListenAddr must be empty (each
	// link listens on a free loopback port); the Seed of the link at index
	// i of the sorted links is Seed+i.
	Proxy Options
	// Cut is the fault of a cut link; the zero Fault means [Cut]().
	Cut Fault
}

type link struct{ from, to string }

// Partition is a set of named nodes whose connections to each other all go
// through proxies, one per ordered pair: node a reaches node b at
// Addr(a, b), which forwards to b's real address. Cutting a and b apart sets
// the cut fault on both a→b and b→a.
//
// A node may have no address (a client that only dials out): links go to
// it from nobody, but it takes part in Split and Isolate like any node.
//
// Split, Isolate and Heal each describe the whole network: a link they do
// not cut is healed, including faults set directly on its Proxy. Cut and
// the link proxies themselves allow finer changes. A Partition is safe for
// concurrent use; topology changes are serialised. Close it to close every
// proxy.
type Partition struct {
	nodes []string          // sorted
	addrs map[string]string // node → real address, "" for none
	links map[link]*Proxy
	order []link // the keys of links, sorted
	cut   Fault

	mu     sync.Mutex
	closed bool
}

// NewPartition builds the proxies for nodes, a map from node name to the
// node's real address ("" for a node nobody dials). Node names must be
// non-empty. opts may be nil.
func NewPartition(nodes map[string]string, opts *PartitionOptions) (*Partition, error) {
	var o PartitionOptions
	if opts != nil {
		o = *opts
	}
	if o.Proxy.ListenAddr != "" {
		return nil, fmt.Errorf("netproxy: PartitionOptions.Proxy.ListenAddr is %q; leave it empty, every link listens on a free port of its own", o.Proxy.ListenAddr)
	}
	if o.Cut == (Fault{}) {
		o.Cut = Cut()
	}
	if err := o.Cut.Validate(); err != nil {
		return nil, fmt.Errorf("netproxy: PartitionOptions.Cut: %w", err)
	}
	if len(nodes) < 2 {
		return nil, fmt.Errorf("netproxy: a partition needs at least two nodes, got %d", len(nodes))
	}
	p := &Partition{addrs: make(map[string]string, len(nodes)), links: make(map[link]*Proxy), cut: o.Cut}
	for n, a := range nodes {
		if n == "" {
			return nil, errors.New("netproxy: a node has an empty name; name every node")
		}
		p.nodes = append(p.nodes, n)
		p.addrs[n] = a
	}
	sort.Strings(p.nodes)
	seed := o.Proxy.Seed
	for _, from := range p.nodes {
		for _, to := range p.nodes {
			if from == to || p.addrs[to] == "" {
				continue
			}
			po := o.Proxy
			po.Seed = seed
			seed++
			px, err := New(p.addrs[to], &po)
			if err != nil {
				p.Close()
				return nil, fmt.Errorf("netproxy: link %s→%s: %w", from, to, err)
			}
			p.links[link{from, to}] = px
			p.order = append(p.order, link{from, to})
		}
	}
	return p, nil
}

// Nodes returns the node names, sorted.
func (p *Partition) Nodes() []string { return append([]string(nil), p.nodes...) }

// Addr returns the address node from must dial to reach node to.
func (p *Partition) Addr(from, to string) (string, error) {
	px, err := p.Link(from, to)
	if err != nil {
		return "", err
	}
	return px.Addr(), nil
}

// Link returns the proxy of the link from→to, to set a fault on that link
// alone (a delay, a hold). It returns an error for an unknown node, for
// from == to, and when to has no address.
func (p *Partition) Link(from, to string) (*Proxy, error) {
	for _, n := range []string{from, to} {
		if _, ok := p.addrs[n]; !ok {
			return nil, p.unknown(n)
		}
	}
	if from == to {
		return nil, fmt.Errorf("netproxy: no link from %s to itself; a node dials its own address directly", from)
	}
	px, ok := p.links[link{from, to}]
	if !ok {
		return nil, fmt.Errorf("netproxy: node %s has no address, so no link leads to it", to)
	}
	return px, nil
}

func (p *Partition) unknown(n string) error {
	return fmt.Errorf("netproxy: unknown node %q; the nodes are %s", n, strings.Join(p.nodes, ", "))
}

// Split cuts the network into groups: links between nodes of different
// groups are cut, all others healed. Every node must be in exactly one
// group; a group of one isolates that node. For example
// Split([]string{"n1"}, []string{"n2", "n3"}).
func (p *Partition) Split(groups ...[]string) error {
	group := make(map[string]int, len(p.nodes))
	for i, g := range groups {
		for _, n := range g {
			if _, ok := p.addrs[n]; !ok {
				return p.unknown(n)
			}
			if j, dup := group[n]; dup {
				return fmt.Errorf("netproxy: node %s is in group %d and group %d; put every node in exactly one group", n, j, i)
			}
			group[n] = i
		}
	}
	for _, n := range p.nodes {
		if _, ok := group[n]; !ok {
			return fmt.Errorf("netproxy: node %s is in no group; put every node in exactly one group (a group of one isolates it)", n)
		}
	}
	return p.apply(func(l link) bool { return group[l.from] != group[l.to] }, true)
}

// Isolate cuts node off from every other node and heals all other links.
func (p *Partition) Isolate(node string) error {
	if _, ok := p.addrs[node]; !ok {
		return p.unknown(node)
	}
	return p.apply(func(l link) bool { return l.from == node || l.to == node }, true)
}

// Heal heals every link.
func (p *Partition) Heal() error {
	return p.apply(func(link) bool { return false }, true)
}

// Cut cuts the links between a and b, both ways, and leaves the others as
// they are: for partial partitions, such as a bridge node that sees both
// sides.
func (p *Partition) Cut(a, b string) error {
	for _, n := range []string{a, b} {
		if _, ok := p.addrs[n]; !ok {
			return p.unknown(n)
		}
	}
	if a == b {
		return fmt.Errorf("netproxy: cannot cut node %s from itself", a)
	}
	return p.apply(func(l link) bool { return l == link{a, b} || l == link{b, a} }, false)
}

// apply sets the cut fault on the links for which cut is true, in a fixed
// order; if healOthers, it heals the others, else it leaves them alone.
func (p *Partition) apply(cut func(link) bool, healOthers bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	for _, l := range p.order {
		px := p.links[l]
		var err error
		switch {
		case cut(l):
			err = px.Set(p.cut)
		case healOthers:
			err = px.Heal()
		}
		if err != nil {
			return fmt.Errorf("netproxy: link %s→%s: %w", l.from, l.to, err)
		}
	}
	return nil
}

// Close closes every proxy and waits for their goroutines.
func (p *Partition) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	var errs []error
	for _, l := range p.order {
		errs = append(errs, p.links[l].Close())
	}
	return errors.Join(errs...)
}
