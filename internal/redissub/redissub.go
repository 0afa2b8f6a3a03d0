// Package redissub multiplexes the release channels of every waiting
// Acquire on one Redis deployment over one pub/sub connection, so a
// thousand waiters cost one connection, not a thousand. A redislock Backend
// has one Subscriber; a redlock Backend has one per node.
package redissub

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fencerlock/fencer/internal/backoff"
	"github.com/redis/go-redis/v9"
)

// Subscriber is the multiplexer; see the package comment. Its methods are
// safe for concurrent use; Close stops it.
//
// It runs two goroutines, started by the first watch and stopped by close:
//
//   - control owns every SUBSCRIBE, UNSUBSCRIBE and PING written to the
//     connection. When woken (kick) it brings Redis's subscriptions in line
//     with the channels that have watchers, and then sends a PING whose
//     payload is a fresh barrier number.
//   - read owns every read. It hands each message to the watchers of its
//     channel and, when the PONG of a barrier arrives, tells the watchers of
//     every channel subscribed before that barrier that their subscription is
//     in effect: Redis answers one connection's commands in order, so the PONG
//     proves the SUBSCRIBE before it was done.
//
// Only control dials, under a deadline (callTimeout), so that a server that
// accepts connections but does not answer (SIGSTOP) cannot hold close for
// go-redis's ReadTimeout: the reader waits for control's signal (up) before
// it reads, after its first start and after every error.
//
// After a connection error go-redis reconnects and resubscribes, but a
// message published while the connection was down is lost. So the reader
// then asks for a new barrier and, when its PONG arrives, every watcher is
// woken once, which makes each Waiter try again. Control retries a failed
// write on its own, with a growing pause.
//
// Nothing here is needed for safety: a Waiter that misses a message still
// tries again when its fallback back-off fires.
type Subscriber struct {
	client redis.UniversalClient
	log    *slog.Logger

	kick chan struct{} // capacity 1: wakes control
	up   chan struct{} // capacity 1: control wrote to a live connection; the reader may read

	mu       sync.Mutex
	started  bool
	closed   bool
	ps       *redis.PubSub
	cancel   context.CancelFunc
	topics   map[string]*topic // channels with at least one watcher
	lastPing uint64            // the last barrier number handed out
	resync   bool              // a read or write failed: re-confirm and wake everyone
	wakeAt   uint64            // wake every watcher when this barrier's PONG arrives; 0 for none
	wg       sync.WaitGroup
}

// topic is one channel and its watchers.
type topic struct {
	watchers map[*Waiter]struct{}
	barrier  uint64 // the PING that proves the SUBSCRIBE; 0 until control sends one
	ready    bool   // that PONG arrived
}

// Waiter is one waiting Acquire. It may watch one channel on each of several
// subscribers (redlock waits on every node); it is woken through wake.
type Waiter struct {
	Wake chan struct{} // capacity 1; receives a wake-up
	// need counts the subscriptions that must be in effect before the first
	// wake-up; the wake-up for the last of them tells the Waiter that a try
	// made now cannot miss a release published afterwards.
	need atomic.Int32
}

// NewWaiter returns a Waiter that must see need subscriptions in effect
// (one per Subscriber it watches through) before its first wake-up.
func NewWaiter(need int) *Waiter {
	w := &Waiter{Wake: make(chan struct{}, 1)}
	w.need.Store(int32(need))
	return w
}

func (w *Waiter) notify() {
	select {
	case w.Wake <- struct{}{}:
	default:
	}
}

func (w *Waiter) confirmed() {
	if w.need.Add(-1) == 0 {
		w.notify()
	}
}

// New returns a Subscriber over client's pub/sub. It starts nothing until
// the first Watch. log must not be nil.
func New(client redis.UniversalClient, log *slog.Logger) *Subscriber {
	return &Subscriber{
		client: client,
		log:    log,
		kick:   make(chan struct{}, 1),
		up:     make(chan struct{}, 1),
		topics: make(map[string]*topic),
	}
}

var errSubscriberClosed = errors.New("redis subscriber closed")

// Watch adds w to the watchers of channel, subscribing to it if w is the
// first. It returns an error only after Close.
func (s *Subscriber) Watch(channel string, w *Waiter) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errSubscriberClosed
	}
	if !s.started {
		s.start()
	}
	t := s.topics[channel]
	if t == nil {
		t = &topic{watchers: make(map[*Waiter]struct{}, 1)}
		s.topics[channel] = t
		s.poke()
	}
	t.watchers[w] = struct{}{}
	if t.ready {
		w.confirmed()
	}
	return nil
}

// Unwatch removes w from the watchers of channel, unsubscribing when it was
// the last.
func (s *Subscriber) Unwatch(channel string, w *Waiter) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.topics[channel]
	if t == nil {
		return
	}
	delete(t.watchers, w)
	if len(t.watchers) == 0 {
		delete(s.topics, channel)
		s.poke()
	}
}

// start creates the pub/sub connection (go-redis dials it lazily) and the
// two goroutines. s.mu is held.
func (s *Subscriber) start() {
	s.started = true
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.ps = s.client.Subscribe(ctx)
	s.wg.Add(2)
	go s.control(ctx, s.ps)
	go s.read(ctx, s.ps)
}

// poke wakes control without blocking.
func (s *Subscriber) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Close stops both goroutines and closes the connection. Watchers are not
// woken: their owner (the Backend) tells them through its own done channel.
func (s *Subscriber) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	started := s.started
	s.mu.Unlock()
	if !started {
		return
	}
	// Cancel first: it aborts a dial in progress, which would otherwise hold
	// the PubSub's lock that Close needs.
	s.cancel()
	_ = s.ps.Close()
	s.wg.Wait()
}

func (s *Subscriber) control(ctx context.Context, ps *redis.PubSub) {
	defer s.wg.Done()
	subscribed := make(map[string]struct{})
	var add, del []string
	// After a failed write, control tries again on its own (with a growing
	// pause): the reader may already have reconnected, and then nothing
	// else would send the barrier that wakes the waiters.
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	pause := minPause
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		case <-retry.C:
		}
		add, del = add[:0], del[:0]
		var ping uint64
		s.mu.Lock()
		for ch := range subscribed {
			if _, ok := s.topics[ch]; !ok {
				del = append(del, ch)
				delete(subscribed, ch)
			}
		}
		barrier := s.lastPing + 1
		for ch, t := range s.topics {
			if _, ok := subscribed[ch]; !ok {
				add = append(add, ch)
				subscribed[ch] = struct{}{}
			}
			// A topic that was removed and added again while its channel
			// stayed subscribed needs a barrier too.
			if t.barrier == 0 || (s.resync && !t.ready) {
				t.barrier = barrier
				ping = barrier
			}
		}
		if s.resync {
			s.resync = false
			s.wakeAt = barrier
			ping = barrier
		}
		if ping != 0 {
			s.lastPing = ping
		}
		s.mu.Unlock()

		// go-redis records the channels even when a write fails, and
		// resubscribes them when it reconnects; what a failure costs is the
		// barrier, which the retry sends again.
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		var err error
		if len(del) > 0 {
			// A channel whose UNSUBSCRIBE is lost is dropped on reconnect
			// anyway, and a message on it finds no watcher: no retry.
			if err := ps.Unsubscribe(cctx, del...); err != nil && ctx.Err() == nil {
				s.log.Debug("redis unsubscribe failed", "channels", len(del), "err", err)
			}
		}
		if len(add) > 0 {
			err = ps.Subscribe(cctx, add...)
		}
		if ping != 0 && err == nil {
			err = ps.Ping(cctx, strconv.FormatUint(ping, 10))
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err == nil && (len(add) > 0 || ping != 0) {
			select {
			case s.up <- struct{}{}:
			default:
			}
		}
		if err != nil {
			s.log.Debug("redis subscribe failed; retrying", "err", err, "pause", pause)
			s.mu.Lock()
			s.resync = true
			s.mu.Unlock()
			retry.Reset(backoff.Jitter(pause))
			pause = min(2*pause, maxPause)
		} else {
			pause = minPause
		}
	}
}

const (
	// Pauses between reconnection attempts of the pub/sub connection.
	minPause, maxPause = 10 * time.Millisecond, time.Second
	// callTimeout bounds each write of control, including the dial and
	// handshake of a new connection.
	callTimeout = time.Second
)

func (s *Subscriber) read(ctx context.Context, ps *redis.PubSub) {
	defer s.wg.Done()
	pause := minPause
	live := false
	for {
		if !live {
			// Read only once control has a live connection (see above).
			select {
			case <-ctx.Done():
				return
			case <-s.up:
			}
		}
		msg, err := ps.Receive(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			// The connection broke. Messages may have been lost, so ask
			// control for a barrier that reconnects and wakes everyone.
			s.log.Debug("redis pub/sub receive failed; reconnecting", "err", err, "pause", pause)
			live = false
			select {
			case <-s.up: // stale: it was about the broken connection
			default:
			}
			s.mu.Lock()
			s.resync = true
			s.mu.Unlock()
			s.poke()
			t := time.NewTimer(backoff.Jitter(pause))
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			pause = min(2*pause, maxPause)
			continue
		}
		pause, live = minPause, true
		switch m := msg.(type) {
		case *redis.Message:
			s.dispatch(m.Channel)
		case *redis.Pong:
			if id, err := strconv.ParseUint(m.Payload, 10, 64); err == nil {
				s.confirm(id)
			}
		}
	}
}

// dispatch wakes the watchers of channel.
func (s *Subscriber) dispatch(channel string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.topics[channel]; t != nil {
		for w := range t.watchers {
			w.notify()
		}
	}
}

// confirm handles the PONG of barrier id: every topic whose SUBSCRIBE was
// written before it is in effect.
func (s *Subscriber) confirm(id uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.topics {
		if !t.ready && t.barrier != 0 && t.barrier <= id {
			t.ready = true
			for w := range t.watchers {
				w.confirmed()
			}
		}
	}
	if s.wakeAt != 0 && s.wakeAt <= id {
		s.wakeAt = 0
		for _, t := range s.topics {
			for w := range t.watchers {
				w.notify()
			}
		}
	}
}
