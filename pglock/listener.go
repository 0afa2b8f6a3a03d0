package pglock

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/fencerlock/fencer/internal/backoff"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// listener is a Backend's one listening connection, shared by all its
// waiting Acquires: it LISTENs on the table's channel, whose payloads are
// the names of released locks, and wakes the waiters of each name.
//
// One goroutine, run, owns the connection: it is started by the first
// watch and stopped (and waited for) by close. It connects and LISTENs,
// then wakes every waiter, since a release published while it was not
// listening was lost; then it hands each notification to the waiters of
// its name, and every pingInterval without one it checks that the
// connection still answers. After an error it reconnects with a growing,
// jittered pause.
//
// Nothing here is needed for safety, nor even for liveness: a waiter that
// misses a notification still tries again when its fallback back-off
// fires, or when the holder's lease runs out.
type listener struct {
	config    *pgx.ConnConfig
	log       *slog.Logger
	pingEvery time.Duration // pingInterval, but for tests
	channel   string        // set by the first watch, before run starts

	mu       sync.Mutex
	started  bool
	closed   bool
	watchers map[string]map[*waiter]struct{} // lock name → its waiters
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// waiter is one waiting Acquire, woken through wake.
type waiter struct {
	wake chan struct{} // capacity 1
}

func newWaiter() *waiter { return &waiter{wake: make(chan struct{}, 1)} }

func (w *waiter) notify() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

const (
	// Pauses between reconnection attempts of the listening connection.
	minPause, maxPause = 10 * time.Millisecond, time.Second
	// pingInterval is how long the connection may stay quiet before the
	// listener checks that it still answers (a peer that vanished without
	// closing the connection sends nothing at all).
	pingInterval = 30 * time.Second
	// callTimeout bounds a connection attempt (unless the connection
	// string sets a shorter connect_timeout), a LISTEN and a ping.
	callTimeout = 5 * time.Second
)

var errListenerClosed = errors.New("pglock: listener closed")

func newListener(config *pgx.ConnConfig, log *slog.Logger) *listener {
	return &listener{config: config, log: log, pingEvery: pingInterval, watchers: make(map[string]map[*waiter]struct{})}
}

// watch adds w to the waiters of name, starting the listener on channel if
// it is the first watch (every watch of a Backend names the same channel,
// its table's). It returns an error only after close.
func (l *listener) watch(channel, name string, w *waiter) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errListenerClosed
	}
	if !l.started {
		l.started = true
		l.channel = channel
		ctx, cancel := context.WithCancel(context.Background())
		l.cancel = cancel
		l.wg.Add(1)
		go l.run(ctx)
	}
	ws := l.watchers[name]
	if ws == nil {
		ws = make(map[*waiter]struct{}, 1)
		l.watchers[name] = ws
	}
	ws[w] = struct{}{}
	return nil
}

// unwatch removes w from the waiters of name.
func (l *listener) unwatch(name string, w *waiter) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ws := l.watchers[name]; ws != nil {
		delete(ws, w)
		if len(ws) == 0 {
			delete(l.watchers, name)
		}
	}
}

// close stops the goroutine, which closes the connection, and waits for
// it. Waiters are not woken: their owner (the Backend) tells them through
// its own done channel.
func (l *listener) close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	cancel := l.cancel
	l.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	l.wg.Wait()
}

func (l *listener) run(ctx context.Context) {
	defer l.wg.Done()
	pause := minPause
	for {
		conn, err := l.connect(ctx)
		if err == nil {
			pause = minPause
			// LISTEN is in effect: a release that commits from now on is
			// delivered. One that committed before may have been missed,
			// so every waiter tries again.
			l.wakeAll()
			err = l.receive(ctx, conn)
			closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = conn.Close(closeCtx)
			cancel()
		}
		if ctx.Err() != nil {
			return
		}
		l.log.Debug("pglock: listening connection failed; reconnecting", "channel", l.channel, "err", err, "pause", pause)
		t := time.NewTimer(backoff.Jitter(pause))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		pause = min(2*pause, maxPause)
	}
}

// connect opens the listening connection and LISTENs on the channel.
func (l *listener) connect(ctx context.Context) (*pgx.Conn, error) {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, l.config)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(cctx, "LISTEN "+pgx.Identifier{l.channel}.Sanitize()); err != nil {
		closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
		return nil, err
	}
	return conn, nil
}

// receive hands notifications to waiters until the connection fails or ctx
// is cancelled.
func (l *listener) receive(ctx context.Context, conn *pgx.Conn) error {
	for {
		wctx, cancel := context.WithTimeout(ctx, l.pingEvery)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err == nil {
			l.dispatch(n.Payload)
			continue
		}
		// A timeout leaves the connection usable; anything else broke it.
		if !pgconn.Timeout(err) && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		pctx, cancel := context.WithTimeout(ctx, callTimeout)
		err = conn.Ping(pctx)
		cancel()
		if err != nil {
			return err
		}
	}
}

// dispatch wakes the waiters of the lock name.
func (l *listener) dispatch(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for w := range l.watchers[name] {
		w.notify()
	}
}

// wakeAll wakes every waiter.
func (l *listener) wakeAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ws := range l.watchers {
		for w := range ws {
			w.notify()
		}
	}
}
