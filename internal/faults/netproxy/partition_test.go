package netproxy

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// newCluster starts an echo server for each of n1, n2, n3 and a Partition
// over them and a client c that has no address.
func newCluster(t *testing.T) *Partition {
	t.Helper()
	nodes := map[string]string{"c": ""}
	for _, n := range []string{"n1", "n2", "n3"} {
		nodes[n] = startEcho(t).addr()
	}
	p, err := NewPartition(nodes, &PartitionOptions{Proxy: Options{Seed: 42}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	return p
}

// reachability probes every link with a new connection and lists it as
// "from>to" if it echoes, "from-x-to" if it hangs. A link expected to work
// gets a generous timeout (the machine may be loaded), one expected to be
// cut a short one.
func reachability(t *testing.T, p *Partition, want string) string {
	t.Helper()
	var out []string
	for _, from := range p.Nodes() {
		for _, to := range p.Nodes() {
			addr, err := p.Addr(from, to)
			if err != nil {
				continue
			}
			timeout := 150 * time.Millisecond
			if slices.Contains(strings.Fields(want), from+">"+to) {
				timeout = 5 * time.Second
			}
			if echoes(t, addr, timeout) {
				out = append(out, from+">"+to)
			} else {
				out = append(out, from+"-x-"+to)
			}
		}
	}
	return strings.Join(out, " ")
}

func TestPartition(t *testing.T) {
	p := newCluster(t)
	if got := strings.Join(p.Nodes(), ","); got != "c,n1,n2,n3" {
		t.Fatalf("Nodes() = %s", got)
	}
	healthy := "c>n1 c>n2 c>n3 n1>n2 n1>n3 n2>n1 n2>n3 n3>n1 n3>n2"
	steps := []struct {
		name string
		do   func() error
		want string
	}{
		{"start", func() error { return nil }, healthy},
		{"split n1 | n2 n3 c", func() error { return p.Split([]string{"n1"}, []string{"n2", "n3", "c"}) },
			"c-x-n1 c>n2 c>n3 n1-x-n2 n1-x-n3 n2-x-n1 n2>n3 n3-x-n1 n3>n2"},
		// Isolate replaces the split: n1 is reachable again.
		{"isolate n2", func() error { return p.Isolate("n2") },
			"c>n1 c-x-n2 c>n3 n1-x-n2 n1>n3 n2-x-n1 n2-x-n3 n3>n1 n3-x-n2"},
		{"heal", p.Heal, healthy},
		// Cut adds to what is there: a bridge, n2 sees both n1 and n3.
		{"cut n1 n3", func() error { return p.Cut("n1", "n3") },
			"c>n1 c>n2 c>n3 n1>n2 n1-x-n3 n2>n1 n2>n3 n3-x-n1 n3>n2"},
		{"cut client from n2 too", func() error { return p.Cut("c", "n2") },
			"c>n1 c-x-n2 c>n3 n1>n2 n1-x-n3 n2>n1 n2>n3 n3-x-n1 n3>n2"},
		{"heal again", p.Heal, healthy},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got := reachability(t, p, s.want); got != s.want {
			t.Fatalf("after %s:\n got %s\nwant %s", s.name, got, s.want)
		}
	}
}

// TestPartitionHealKeepsQuietConnections: a connection over a cut link
// that sent nothing during the cut survives the heal, like TCP.
func TestPartitionHealKeepsQuietConnections(t *testing.T) {
	p := newCluster(t)
	addr, err := p.Addr("n1", "n2")
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, addr)
	write(t, c, "a")
	mustRead(t, c, "a")
	if err := p.Isolate("n1"); err != nil {
		t.Fatal(err)
	}
	if err := p.Heal(); err != nil {
		t.Fatal(err)
	}
	write(t, c, "b")
	mustRead(t, c, "b")
}

func TestPartitionLinkFault(t *testing.T) {
	p := newCluster(t)
	l, err := p.Link("n1", "n2")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Set(Delay(Up, 30*time.Millisecond, 0)); err != nil {
		t.Fatal(err)
	}
	c := dial(t, l.Addr())
	start := time.Now()
	write(t, c, "x")
	mustRead(t, c, "x")
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Fatalf("round trip over a delayed link took %v", d)
	}
	// The reverse link is its own proxy and is not delayed.
	if r, _ := p.Link("n2", "n1"); r.Fault() != (Fault{}) {
		t.Fatalf("n2→n1 has fault %v", r.Fault())
	}
	// Heal describes the whole network: it clears the delay too.
	if err := p.Heal(); err != nil {
		t.Fatal(err)
	}
	if l.Fault() != (Fault{}) {
		t.Fatalf("after Heal n1→n2 has fault %v", l.Fault())
	}
}

func TestPartitionErrors(t *testing.T) {
	p := newCluster(t)
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"unknown in split", p.Split([]string{"n1", "n9"}, []string{"n2", "n3", "c"}), `unknown node "n9"`},
		{"twice in split", p.Split([]string{"n1", "n2"}, []string{"n2", "n3", "c"}), "n2 is in group 0 and group 1"},
		{"missing in split", p.Split([]string{"n1"}, []string{"n2", "n3"}), "c is in no group"},
		{"unknown isolate", p.Isolate("x"), `unknown node "x"`},
		{"self link", func() error { _, err := p.Link("n1", "n1"); return err }(), "itself"},
		{"link to client", func() error { _, err := p.Addr("n1", "c"); return err }(), "c has no address"},
		{"self cut", p.Cut("n2", "n2"), "itself"},
	} {
		if tc.err == nil || !strings.Contains(tc.err.Error(), tc.want) {
			t.Errorf("%s: %v; want an error containing %q", tc.name, tc.err, tc.want)
		}
	}
	if _, err := NewPartition(map[string]string{"a": "127.0.0.1:1"}, nil); err == nil {
		t.Error("a partition of one node: no error")
	}
	if _, err := NewPartition(map[string]string{"a": "127.0.0.1:1", "b": "x"}, nil); err == nil {
		t.Error("a node address without a port: no error")
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Heal(); err != ErrClosed {
		t.Fatalf("Heal after Close: %v; want ErrClosed", err)
	}
}

// ExamplePartition shows the shape of a fault schedule driving a partition.
func ExamplePartition() {
	// Real nodes would listen here; the proxies dial them per connection.
	p, err := NewPartition(map[string]string{
		"n1": "127.0.0.1:7001", "n2": "127.0.0.1:7002", "n3": "127.0.0.1:7003",
		"client": "", // dials out only
	}, &PartitionOptions{Proxy: Options{Seed: 1}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()
	// Each node is configured to reach each peer at p.Addr(self, peer).
	schedule := []func() error{
		func() error { return p.Isolate("n1") },                                         // leader cut off
		func() error { return p.Split([]string{"n1", "n2"}, []string{"n3", "client"}) }, // majority without the client
		p.Heal,
	}
	for _, step := range schedule {
		if err := step(); err != nil {
			fmt.Println(err)
		}
	}
	l, _ := p.Link("client", "n2")
	fmt.Println(l.Fault())
	// Output: healthy
}
