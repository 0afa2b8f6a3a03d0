package bench_test

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/fencerlock/fencer/bench"
)

// mutexLocker is a Locker over one in-process mutex per name: the shape a
// peer's adapter takes (acquire blocks; the returned Held releases).
type mutexLocker struct {
	mu    sync.Mutex
	locks map[string]*sync.Mutex
}

func (l *mutexLocker) Acquire(ctx context.Context, name string) (bench.Held, error) {
	l.mu.Lock()
	m, ok := l.locks[name]
	if !ok {
		m = new(sync.Mutex)
		l.locks[name] = m
	}
	l.mu.Unlock()
	m.Lock()
	return unlocker{m}, nil
}

type unlocker struct{ m *sync.Mutex }

func (u unlocker) Release(context.Context) error { u.m.Unlock(); return nil }

func Example() {
	l := &mutexLocker{locks: make(map[string]*sync.Mutex)}
	clients := []bench.Locker{l, l, l, l} // one shared Locker: it is safe for concurrent use
	rep, err := bench.Run(context.Background(), bench.Config{
		Workload: bench.Contended,
		Duration: 200 * time.Millisecond,
		Hold:     time.Millisecond,
	}, clients)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(rep.Workload, rep.Clients, "clients,", rep.Locks, "lock")
	fmt.Println("pairs measured:", rep.Pairs > 0, "overlaps:", rep.Overlaps, "errors:", rep.ErrorsTotal)
	// Output:
	// contended 4 clients, 1 lock
	// pairs measured: true overlaps: 0 errors: 0
}
