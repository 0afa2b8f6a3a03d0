package server_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/client"
)

// benchAcquireRelease measures uncontended acquire+release pairs: each of
// 64 goroutines takes its own lock, through its own client backend.
// logStore is the Raft log store ("" for the default, raft-wal).
func benchAcquireRelease(b *testing.B, nodes int, logStore string) {
	cluster := startClusterB(b, nodes, logStore)
	endpoints := addrs(cluster)
	const clients = 64
	cs := make([]*fencer.Client, clients)
	for i := range cs {
		be, err := client.New(client.Config{Endpoints: endpoints})
		if err != nil {
			b.Fatal(err)
		}
		cs[i] = fencer.New(be, nil)
		defer cs[i].Close()
	}
	var next atomic.Int64
	b.SetParallelism((clients + 1) / 2)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		i := next.Add(1) - 1
		c := cs[int(i)%clients]
		name := fmt.Sprintf("bench-%d", i)
		ctx := context.Background()
		for pb.Next() {
			l, err := c.Acquire(ctx, name, &fencer.Options{NoRenew: true})
			if err != nil {
				b.Error(err)
				return
			}
			if err := l.Release(ctx); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "pairs/s")
}

func BenchmarkAcquireRelease1Node(b *testing.B)  { benchAcquireRelease(b, 1, "") }
func BenchmarkAcquireRelease3Nodes(b *testing.B) { benchAcquireRelease(b, 3, "") }

// The same with raft-boltdb, the alternative log store (Config.LogStore).
func BenchmarkAcquireRelease1NodeBolt(b *testing.B)  { benchAcquireRelease(b, 1, "bolt") }
func BenchmarkAcquireRelease3NodesBolt(b *testing.B) { benchAcquireRelease(b, 3, "bolt") }

func BenchmarkAcquireReleaseSerial1Node(b *testing.B) {
	cluster := startClusterB(b, 1, "")
	be, err := client.New(client.Config{Endpoints: addrs(cluster)})
	if err != nil {
		b.Fatal(err)
	}
	c := fencer.New(be, nil)
	defer c.Close()
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		l, err := c.Acquire(ctx, "serial", &fencer.Options{NoRenew: true})
		if err != nil {
			b.Fatal(err)
		}
		if err := l.Release(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
