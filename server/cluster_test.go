package server_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/fencerlock/fencer/server"
)

// testLogger logs to stderr when FENCER_TEST_LOG is set, else nowhere.
func testLogger() *slog.Logger {
	if os.Getenv("FENCER_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

// nodeConfig is a test node's config: loopback, free ports, fast elections.
func nodeConfig(t testing.TB, id string) server.Config {
	return server.Config{
		NodeID:           id,
		DataDir:          t.TempDir(),
		ListenAddr:       "127.0.0.1:0",
		RaftAddr:         "127.0.0.1:0",
		HeartbeatTimeout: 300 * time.Millisecond,
		Logger:           testLogger(),
	}
}

func startNode(t testing.TB, cfg server.Config) *server.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := server.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start %s: %v", cfg.NodeID, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// startCluster starts n nodes in-process: the first bootstraps, the others
// join it. It returns once one node leads and all have joined.
func startCluster(t *testing.T, n int) []*server.Server { return startClusterB(t, n, "") }

// startClusterB is startCluster for any testing.TB.
func startClusterB(t testing.TB, n int, logStore string) []*server.Server {
	t.Helper()
	first := nodeConfig(t, "n1")
	first.Bootstrap, first.LogStore = true, logStore
	nodes := []*server.Server{startNode(t, first)}
	waitLeader(t, nodes)
	for i := 2; i <= n; i++ {
		cfg := nodeConfig(t, fmt.Sprintf("n%d", i))
		cfg.Join, cfg.LogStore = nodes[0].Addr(), logStore
		nodes = append(nodes, startNode(t, cfg))
	}
	waitLeader(t, nodes)
	return nodes
}

// waitLeader waits until one of nodes leads and is ready, and returns it.
func waitLeader(t testing.TB, nodes []*server.Server) *server.Server {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, n := range nodes {
			if n.IsLeader() {
				return n
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no leader within 30s")
	return nil
}

func addrs(nodes []*server.Server) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.Addr())
	}
	return out
}
