package server

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/fencerlock/fencer/internal/lockstate"
)

// BenchmarkHeld measures, with N locks held (each by its own session, as
// the Go client holds them): the server's heap per held lock (state
// machine, leader timers and Raft's in-memory share), and the cost of an
// acquire+release pair of one more lock, which should not grow with N.
//
//	go test -run XXX -bench Held -benchtime 2000x ./server/
func BenchmarkHeld(b *testing.B) {
	for _, n := range []int{1_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("locks=%d", n), func(b *testing.B) {
			s, err := Start(context.Background(), Config{
				NodeID: "n1", DataDir: b.TempDir(), NoClientAPI: true, RaftAddr: "127.0.0.1:0",
				Bootstrap: true, HeartbeatTimeout: 300 * time.Millisecond,
			})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			for !s.IsLeader() {
				time.Sleep(5 * time.Millisecond)
			}
			before := heapInUse()
			fill(b, s, n)
			perLock := float64(heapInUse()-before) / float64(n)

			ctx := context.Background()
			b.ResetTimer()
			for i := range b.N {
				id := uint64(1<<62 + i)
				if _, err := s.acquire(ctx, acquireArgs{session: id, name: "extra", ttl: time.Hour}); err != nil {
					b.Fatal(err)
				}
				if _, err := s.release(ctx, id, 0); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(perLock, "heap-bytes/held-lock")
		})
	}
}

// fill holds n locks, each with its own session, proposing many commands
// per entry.
func fill(b *testing.B, s *Server, n int) {
	const perProposal = 128 // 256 commands: under maxBatch
	now := time.Now()
	var props []*proposal
	for i := 0; i < n; i += perProposal {
		var cmds []lockstate.Command
		for j := i; j < min(i+perProposal, n); j++ {
			id := uint64(j + 1)
			cmds = append(cmds,
				lockstate.OpenSession{ID: id, TTL: time.Hour, Now: now},
				lockstate.Acquire{Session: id, Seq: 1, Name: fmt.Sprintf("held/%08d", j), Now: now})
			s.withTimers(func(t *timers) { t.track(id, time.Hour, now) })
		}
		props = append(props, s.prop.propose(cmds...))
		if len(props) == 64 {
			for _, p := range props {
				if _, err := p.wait(); err != nil {
					b.Fatal(err)
				}
			}
			props = props[:0]
		}
	}
	for _, p := range props {
		if _, err := p.wait(); err != nil {
			b.Fatal(err)
		}
	}
	var held int
	s.fsm.read(func(m *lockstate.Machine, _ uint64) { held = len(m.Locks()) })
	if held != n {
		b.Fatalf("%d locks held, want %d", held, n)
	}
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}
