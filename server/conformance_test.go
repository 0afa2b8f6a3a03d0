package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/client"
	"github.com/fencerlock/fencer/internal/api/fencerv1"
	"github.com/fencerlock/fencer/internal/rpcclient"
	"github.com/fencerlock/fencer/locktest"
	"github.com/fencerlock/fencer/server"
)

// harness runs the conformance suite against an in-process cluster of n
// nodes. Delete closes the holder's session through the API, as an
// operator would; Outage stops every node.
func harness(n int) locktest.Harness {
	return locktest.Harness{Start: func(t *testing.T) *locktest.Target {
		nodes := startCluster(t, n)
		endpoints := addrs(nodes)
		return &locktest.Target{
			New: func(t *testing.T) fencer.Backend {
				b, err := client.New(client.Config{Endpoints: endpoints})
				if err != nil {
					t.Fatal(err)
				}
				return b
			},
			URL: "fencer://" + strings.Join(endpoints, ","),
			Delete: func(t *testing.T, name string) {
				closeHolder(t, endpoints, name)
			},
			Outage: func(t *testing.T) {
				for _, s := range nodes {
					s.Close()
				}
			},
		}
	}}
}

func closeHolder(t *testing.T, endpoints []string, name string) {
	t.Helper()
	conn := rpcclient.New(rpcclient.Config{Endpoints: endpoints})
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := conn.Status(ctx, &fencerv1.StatusRequest{Name: name})
	if err != nil || len(st.Locks) != 1 || st.Locks[0].HolderSession == 0 {
		t.Fatalf("status of %q: %v %v", name, st, err)
	}
	r, err := conn.Release(ctx, &fencerv1.ReleaseRequest{SessionId: st.Locks[0].HolderSession})
	if err != nil || !r.Released {
		t.Fatalf("close the holder's session: %v %v", r, err)
	}
}

func TestConformanceOneNode(t *testing.T) { locktest.Run(t, harness(1)) }

func TestConformanceThreeNodes(t *testing.T) { locktest.Run(t, harness(3)) }

var _ = server.Config{}
