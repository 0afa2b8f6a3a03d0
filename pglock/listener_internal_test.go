package pglock

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fencerlock/fencer/internal/testutil/pgtest"
)

// syncBuffer is a bytes.Buffer safe for the listener's goroutine and the
// test's.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestListenerQuietConnection: the listener's health checks (a wait for
// notifications that times out, then a ping) keep the connection, and the
// notifications after them reach the right waiters.
func TestListenerQuietConnection(t *testing.T) {
	srv := pgtest.Start(t, nil)
	admin := srv.Pool(t)
	cfg, err := pgx.ParseConfig(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	l := newListener(cfg, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	l.pingEvery = 20 * time.Millisecond
	defer l.close()
	a, b := newWaiter(), newWaiter()
	if err := l.watch("pglock_test", "lock-a", a); err != nil {
		t.Fatal(err)
	}
	if err := l.watch("pglock_test", "lock-b", b); err != nil {
		t.Fatal(err)
	}
	woken := func(w *waiter, within time.Duration) bool {
		select {
		case <-w.wake:
			return true
		case <-time.After(within):
			return false
		}
	}
	// Once LISTEN is in effect, every waiter is woken.
	if !woken(a, 10*time.Second) || !woken(b, time.Second) {
		t.Fatal("the waiters were not woken when the listener came up")
	}
	time.Sleep(300 * time.Millisecond) // quiet: several timeouts and pings
	ctx := context.Background()
	if _, err := admin.Exec(ctx, `SELECT pg_notify('pglock_test', 'lock-b')`); err != nil {
		t.Fatal(err)
	}
	if !woken(b, 5*time.Second) {
		t.Fatal("a notification after quiet periods did not reach its waiter")
	}
	if woken(a, 100*time.Millisecond) {
		t.Error("a notification for lock-b woke the waiter of lock-a")
	}
	l.unwatch("lock-b", b)
	if _, err := admin.Exec(ctx, `SELECT pg_notify('pglock_test', 'lock-b'), pg_notify('pglock_test', 'lock-a')`); err != nil {
		t.Fatal(err)
	}
	if !woken(a, 5*time.Second) {
		t.Fatal("the waiter of lock-a was not woken")
	}
	if woken(b, 100*time.Millisecond) {
		t.Error("a waiter that stopped watching was woken")
	}
	if strings.Contains(logs.String(), "reconnecting") {
		t.Errorf("the listener reconnected: the health checks broke its connection:\n%s", logs.String())
	}
}
