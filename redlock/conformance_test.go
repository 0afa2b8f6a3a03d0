package redlock_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/internal/testutil/redistest"
	"github.com/fencerlock/fencer/locktest"
	"github.com/fencerlock/fencer/redlock"
)

// TestConformance runs the suite every fencer backend passes against 3 and
// against 5 real redis-servers.
func TestConformance(t *testing.T) {
	for _, n := range []int{3, 5} {
		t.Run(strconv.Itoa(n)+"Nodes", func(t *testing.T) {
			locktest.Run(t, locktest.Harness{Start: func(t *testing.T) *locktest.Target {
				return startTarget(t, n)
			}})
		})
	}
}

func startTarget(t *testing.T, n int) *locktest.Target {
	srvs := startServers(t, n)
	url := redlockURL(srvs)
	return &locktest.Target{
		New: func(t *testing.T) fencer.Backend {
			// Fresh clients, as another process would have. The node timeout
			// is raised from its default (TTL/20, 2 to 500 ms, meant for a
			// production network) because this machine is shared and the
			// race detector slows everything: a try with a 300 ms TTL must
			// not fail because a busy scheduler kept a node's reply 15 ms.
			// The fault tests use the default.
			// The connections are made here, as a running process has them,
			// so that a first request does not also spend round trips on a
			// dial and handshake inside its node timeout.
			cs := make([]redis.UniversalClient, len(srvs))
			for i, s := range srvs {
				c := redis.NewClient(&redis.Options{Addr: s.Addr, ContextTimeoutEnabled: true})
				t.Cleanup(func() { c.Close() })
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := c.Ping(ctx).Err()
				cancel()
				if err != nil {
					t.Fatal(err)
				}
				cs[i] = c
			}
			b, err := redlock.New(redlock.Config{Clients: cs, NodeTimeout: 200 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			return b
		},
		URL: url,
		Delete: func(t *testing.T, name string) {
			t.Helper()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			key := keyOf(t, srvs, name)
			for _, s := range srvs {
				if err := s.Client().Del(ctx, key).Err(); err != nil {
					t.Fatalf("delete lock %q on %s: %v", name, s.Addr, err)
				}
			}
		},
		Outage: func(t *testing.T) {
			// A majority stops answering; the rest keep going.
			for _, s := range srvs[:n/2+1] {
				s.Pause()
				t.Cleanup(s.Resume)
			}
		},
	}
}

func startServers(t *testing.T, n int) []*redistest.Server {
	t.Helper()
	srvs := make([]*redistest.Server, n)
	for i := range srvs {
		srvs[i] = redistest.Start(t, nil)
	}
	return srvs
}

func redlockURL(srvs []*redistest.Server) string {
	addrs := make([]string, len(srvs))
	for i, s := range srvs {
		addrs[i] = s.Addr
	}
	return "redlock://" + strings.Join(addrs, ",")
}

func clients(srvs []*redistest.Server) []redis.UniversalClient {
	cs := make([]redis.UniversalClient, len(srvs))
	for i, s := range srvs {
		cs[i] = s.Client()
	}
	return cs
}

// keyOf returns the lock key of name under the default configuration.
func keyOf(t *testing.T, srvs []*redistest.Server, name string) string {
	t.Helper()
	b, err := redlock.New(redlock.Config{Clients: clients(srvs)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	return b.Key(name)
}
