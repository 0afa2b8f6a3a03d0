package cluster_test

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/fencerlock/fencer/internal/api/fencerv1"
	"github.com/fencerlock/fencer/internal/cluster"
	"github.com/fencerlock/fencer/internal/rpcclient"
	"github.com/fencerlock/fencer/internal/testutil"
)

// startCluster starts a cluster for the test and closes it at cleanup,
// printing the nodes' log tails if the test failed.
func startCluster(t *testing.T, cfg cluster.Config) *cluster.Cluster {
	t.Helper()
	start := time.Now()
	cfg.Binary = testutil.FencerBinary(t)
	cfg.Dir = t.TempDir()
	if os.Getenv("FENCER_TEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := cluster.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d nodes serve %v after the test began (the fencer binary built first)", cfg.Nodes, time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("node logs:\n%s", c.Tails(4000))
		}
		if err := c.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return c
}

// acquire takes lock name with a fresh session through any member and
// returns the token.
func acquire(t *testing.T, c *cluster.Cluster, name string, session uint64) uint64 {
	t.Helper()
	conn := rpcclient.New(rpcclient.Config{Endpoints: c.Endpoints()})
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := conn.Acquire(ctx, &fencerv1.AcquireRequest{SessionId: session, Name: name, TtlMs: 60_000})
	if err != nil {
		t.Fatalf("acquire %q: %v", name, err)
	}
	if resp.Status != fencerv1.AcquireStatus_ACQUIRE_STATUS_GRANTED {
		t.Fatalf("acquire %q: %v, want granted", name, resp.Status)
	}
	return resp.Token
}

func TestIsolateLeader(t *testing.T) {
	c := startCluster(t, cluster.Config{Nodes: 3, Proxies: true, HeartbeatTimeout: 500 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	old, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	before := acquire(t, c, "before", 1)

	if err := c.Partition().Isolate(old); err != nil {
		t.Fatal(err)
	}
	isolated := time.Now()
	var leader string
	for leader == "" || leader == old {
		if leader, err = c.Leader(ctx); err != nil {
			t.Fatalf("no new leader after isolating %s: %v", old, err)
		}
	}
	t.Logf("isolated %s; %s leads after %v", old, leader, time.Since(isolated).Round(time.Millisecond))
	// The majority keeps granting, and the token counter goes on.
	if during := acquire(t, c, "during", 2); during <= before {
		t.Errorf("token %d granted after the failover is not above %d granted before", during, before)
	}

	if err := c.Partition().Heal(); err != nil {
		t.Fatal(err)
	}
	healed := time.Now()
	if err := c.WaitConverged(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("healed; the replicas agree after %v", time.Since(healed).Round(time.Millisecond))
	states, err := c.States(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(states) != 3 {
		t.Fatalf("%d states after healing, want 3: %+v", len(states), states)
	}
	leaders := 0
	for _, s := range states {
		if s.Leader {
			leaders++
		}
		if s.LastToken != 2 {
			t.Errorf("%s: last token %d, want 2", s.NodeID, s.LastToken)
		}
	}
	if leaders != 1 {
		t.Errorf("%d leaders after healing: %+v", leaders, states)
	}
}

// TestMembershipAndRestart adds a spare node, removes another, kills and
// restarts a third, and pauses and resumes one, with proxies on every link.
func TestMembershipAndRestart(t *testing.T) {
	c := startCluster(t, cluster.Config{Nodes: 3, Spares: 1, Proxies: true, HeartbeatTimeout: 500 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	id, err := c.AddNode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if id != "n4" {
		t.Errorf("added node %s, want the spare n4", id)
	}
	if _, err := c.AddNode(ctx); err == nil || !strings.Contains(err.Error(), "no spare") {
		t.Errorf("a second AddNode with no spare left: %v, want an error naming the missing spare", err)
	}
	if err := c.RemoveNode(ctx, "n2"); err != nil {
		t.Fatal(err)
	}
	if got := len(c.Endpoints()); got != 3 {
		t.Errorf("%d endpoints after adding one node and removing one, want 3", got)
	}
	token := acquire(t, c, "a", 1)

	if err := c.Kill("n3"); err != nil {
		t.Fatal(err)
	}
	if err := c.Restart(ctx, "n3"); err != nil {
		t.Fatal(err)
	}
	if err := c.Pause("n4"); err != nil {
		t.Fatal(err)
	}
	if err := c.Restart(ctx, "n4"); err == nil {
		t.Error("Restart of a paused node succeeded; want an error")
	}
	if err := c.Resume("n4"); err != nil {
		t.Fatal(err)
	}
	if next := acquire(t, c, "b", 2); next <= token {
		t.Errorf("token %d after a restart is not above %d", next, token)
	}
	if err := c.WaitConverged(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop("n1"); err != nil {
		t.Errorf("graceful stop of n1: %v", err)
	}
	if _, err := c.Leader(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  cluster.Config
		want string
	}{
		{"no binary", cluster.Config{Dir: t.TempDir()}, "Config.Binary is empty"},
		{"no dir", cluster.Config{Binary: os.Args[0]}, "Config.Dir is empty"},
		{"too many", cluster.Config{Binary: os.Args[0], Dir: t.TempDir(), Nodes: 8, Spares: 2}, "1 to 9 nodes"},
		{"one proxied node", cluster.Config{Binary: os.Args[0], Dir: t.TempDir(), Nodes: 1, Proxies: true}, "at least two"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := cluster.Start(context.Background(), tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Start: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
