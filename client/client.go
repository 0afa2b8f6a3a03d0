// Package client is the fencer.Backend of the fencer lock server: the lock
// for code whose correctness depends on it. Consensus decides who holds a
// lock, and every grant carries a fencing token that strictly increases
// across all locks, restarts and leader changes. It declares Correctness.
//
// Every lease is a server session of its own, chosen at random by this
// client and opened in the same request that asks for the lock. A granted
// lease lives while the Client renews it (Backend.Renew sends a keep-alive
// to the leader); a waiting acquire is kept alive by the backend itself
// until it is granted or given up. The backend finds the leader, follows it
// across elections, and retries requests that are safe to retry: a retried
// acquire names the same session, so it can never be granted twice.
package client

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/internal/wire"
	"github.com/fencerlock/fencer/server"
)

// Config configures a Backend. Zero fields take their defaults.
type Config struct {
	// Endpoints are the client API addresses (host:port) of one or more
	// cluster members. Required. The backend learns the leader from them.
	Endpoints []string
	// Logger receives keep-alive failures at Debug. Nil discards them.
	Logger *slog.Logger
	// Dial, if set, opens the connection to a node: an endpoint, or the
	// leader a follower names. A fault injector maps addresses to its
	// proxies here. Nil dials TCP directly.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Backend is the fencer server's fencer.Backend. It is safe for concurrent
// use. Close stops its keep-alives; leases still held then expire on the
// server after their TTL.
type Backend struct {
	cl  *cluster
	log *slog.Logger

	mu      sync.Mutex
	waiting map[uint64]*session // sessions of acquires in progress
	closed  bool

	wake   chan struct{}
	ctx    context.Context // cancelled by Close
	stop   context.CancelFunc
	done   chan struct{}
	closer sync.Once
}

var _ fencer.Backend = (*Backend)(nil)

// session is one lease's server session.
type session struct {
	id   uint64
	ttl  time.Duration
	lost chan struct{} // closed when the server says the session is gone

	mu       sync.Mutex
	lastSent time.Time // send time of the latest acknowledged request
	lostOnce sync.Once
}

func (s *session) acked(sent time.Time) {
	s.mu.Lock()
	if sent.After(s.lastSent) {
		s.lastSent = sent
	}
	s.mu.Unlock()
}

func (s *session) sent() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastSent
}

func (s *session) markLost() { s.lostOnce.Do(func() { close(s.lost) }) }

// New returns a Backend for the cluster at cfg.Endpoints.
func New(cfg Config) (*Backend, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, &fencer.InvalidError{Field: "endpoints", Value: "", Reason: "none given", Accepted: "one or more host:port client API addresses"}
	}
	for _, e := range cfg.Endpoints {
		if err := server.ValidateAddr("endpoint", e, false); err != nil {
			return nil, err
		}
	}
	b := &Backend{
		cl:      &cluster{endpoints: slices.Clone(cfg.Endpoints), dial: cfg.Dial},
		log:     cfg.Logger,
		waiting: make(map[uint64]*session),
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	b.ctx, b.stop = context.WithCancel(context.Background())
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	go b.keepWaitersAlive()
	return b, nil
}

// ParseURL parses fencer://host:port[,host:port...] into a Config.
func ParseURL(url string) (Config, error) {
	const accepted = "fencer://host:port[,host:port...], e.g. fencer://127.0.0.1:7700"
	rest, ok := strings.CutPrefix(url, "fencer://")
	if !ok {
		return Config{}, &fencer.InvalidError{Field: "backend URL", Value: url, Reason: "not a fencer:// URL", Accepted: accepted}
	}
	rest = strings.TrimSuffix(rest, "/")
	if rest == "" || strings.ContainsAny(rest, "/?#@") {
		return Config{}, &fencer.InvalidError{Field: "backend URL", Value: url, Reason: "it must list host:port addresses only", Accepted: accepted}
	}
	var cfg Config
	for _, a := range strings.Split(rest, ",") {
		if err := server.ValidateAddr("address in the backend URL", a, false); err != nil {
			return Config{}, &fencer.InvalidError{Field: "backend URL", Value: url, Reason: err.Error(), Accepted: accepted}
		}
		if slices.Contains(cfg.Endpoints, a) {
			return Config{}, &fencer.InvalidError{Field: "backend URL", Value: url, Reason: a + " is listed twice", Accepted: accepted}
		}
		cfg.Endpoints = append(cfg.Endpoints, a)
	}
	return cfg, nil
}

// Open returns a Backend for a fencer:// URL.
func Open(url string) (*Backend, error) {
	cfg, err := ParseURL(url)
	if err != nil {
		return nil, err
	}
	return New(cfg)
}

// Info declares Correctness, tokens and lock-delay.
func (b *Backend) Info() fencer.BackendInfo {
	return fencer.BackendInfo{Kind: "fencer", Guarantee: fencer.Correctness, Tokens: true, LockDelay: true}
}

func newSessionID() uint64 {
	var b [8]byte
	for {
		rand.Read(b[:])
		if id := binary.LittleEndian.Uint64(b[:]); id != 0 {
			return id
		}
	}
}

// Acquire opens a new session and asks for the lock with it. A waiting
// acquire is answered by the server when the grant commits; while it
// waits, the backend keeps the session alive. If the acquire fails or ctx
// ends, the session is closed, so a grant that raced the give-up is
// released.
func (b *Backend) Acquire(ctx context.Context, req fencer.AcquireRequest) (fencer.Grant, error) {
	if b.isClosed() {
		return fencer.Grant{}, fencer.ErrClosed
	}
	s := &session{id: newSessionID(), ttl: req.TTL, lost: make(chan struct{})}
	start := time.Now()
	s.acked(start)
	if req.Wait {
		b.setWaiting(s, true)
		defer b.setWaiting(s, false)
	}
	resp, err := b.cl.call(ctx, wire.Request{
		Kind:        wire.KindAcquire,
		Session:     s.id,
		Name:        req.Name,
		TTLMillis:   uint64(req.TTL / time.Millisecond),
		Wait:        req.Wait,
		DelayMillis: uint64(req.LockDelay / time.Millisecond),
	})
	if err != nil {
		b.closeSession(s)
		return fencer.Grant{}, wrapErr(err, "acquire "+req.Name)
	}
	if !resp.Granted {
		return fencer.Grant{}, fmt.Errorf("%w: %q", fencer.ErrLocked, req.Name)
	}
	// The session's deadline runs from the last request the leader
	// acknowledged: the acquire itself, or a keep-alive while it waited.
	return fencer.Grant{Name: req.Name, Token: fencer.Token(resp.Token), TTL: req.TTL, Sent: s.sent(), Lost: s.lost, Handle: s}, nil
}

// closeSession closes a session whose acquire failed or was given up, in
// case the server opened it; if that fails too, the session expires.
func (b *Backend) closeSession(s *session) {
	ctx, cancel := context.WithTimeout(context.Background(), min(s.ttl, 2*time.Second))
	defer cancel()
	if _, err := b.cl.call(ctx, wire.Request{Kind: wire.KindRelease, Session: s.id}); err != nil {
		b.log.Debug("closing an abandoned session failed; it will expire", "session", s.id, "err", err)
	}
}

// Renew sends a keep-alive for the lease's session.
func (b *Backend) Renew(ctx context.Context, g fencer.Grant) (fencer.Grant, error) {
	s, ok := g.Handle.(*session)
	if !ok {
		return fencer.Grant{}, fmt.Errorf("%w: grant %q is not from the fencer backend", fencer.ErrLeaseLost, g.Name)
	}
	sent := time.Now()
	resp, err := b.cl.call(ctx, wire.Request{Kind: wire.KindKeepAlive, Sessions: []uint64{s.id}})
	if err != nil {
		return fencer.Grant{}, wrapErr(err, "renew "+g.Name)
	}
	if len(resp.Expired) > 0 {
		s.markLost()
		return fencer.Grant{}, fmt.Errorf("%w: lock %q: the server expired its session", fencer.ErrLeaseLost, g.Name)
	}
	s.acked(sent)
	g.Sent = sent
	return g, nil
}

// Release closes the lease's session, which releases the lock.
func (b *Backend) Release(ctx context.Context, g fencer.Grant) error {
	s, ok := g.Handle.(*session)
	if !ok {
		return fmt.Errorf("%w: grant %q is not from the fencer backend", fencer.ErrLeaseLost, g.Name)
	}
	resp, retried, err := b.cl.callRetried(ctx, wire.Request{Kind: wire.KindRelease, Session: s.id, Token: uint64(g.Token)})
	if err != nil {
		return wrapErr(err, "release "+g.Name)
	}
	if !resp.Released && retried {
		// An attempt whose answer was lost (a leader change, a broken
		// connection) may have closed the session already: either way
		// the lock is no longer held by this lease.
		return nil
	}
	if !resp.Released {
		return fmt.Errorf("%w: lock %q: the server no longer has its session (it expired)", fencer.ErrLeaseLost, g.Name)
	}
	return nil
}

// Close stops the keep-alives of waiting acquires. It does not release
// leases.
func (b *Backend) Close() error {
	b.closer.Do(func() {
		b.mu.Lock()
		b.closed = true
		b.mu.Unlock()
		b.stop()
		<-b.done
		b.cl.close()
	})
	return nil
}

func (b *Backend) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

func (b *Backend) setWaiting(s *session, on bool) {
	b.mu.Lock()
	if on {
		b.waiting[s.id] = s
	} else {
		delete(b.waiting, s.id)
	}
	b.mu.Unlock()
	if on {
		select {
		case b.wake <- struct{}{}:
		default:
		}
	}
}

// keepWaitersAlive sends keep-alives for the sessions of waiting acquires,
// each about every TTL/3, in one call per round.
func (b *Backend) keepWaitersAlive() {
	defer close(b.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-b.wake:
		case <-timer.C:
		}
		now := time.Now()
		var due []*session
		next := time.Hour
		b.mu.Lock()
		for _, s := range b.waiting {
			at := s.sent().Add(s.ttl / 3)
			if !at.After(now) {
				due = append(due, s)
				at = now.Add(s.ttl / 3)
			}
			next = min(next, at.Sub(now))
		}
		b.mu.Unlock()
		if len(due) > 0 {
			b.keepAlive(due)
		}
		timer.Reset(max(next, time.Millisecond))
	}
}

func (b *Backend) keepAlive(ss []*session) {
	ids := make([]uint64, len(ss))
	ttl := ss[0].ttl
	for i, s := range ss {
		ids[i] = s.id
		ttl = min(ttl, s.ttl)
	}
	ctx, cancel := context.WithTimeout(b.ctx, max(ttl/3, 10*time.Millisecond))
	defer cancel()
	sent := time.Now()
	resp, err := b.cl.call(ctx, wire.Request{Kind: wire.KindKeepAlive, Sessions: ids})
	if err != nil {
		b.log.Debug("keep-alive of waiting sessions failed", "sessions", len(ids), "err", err)
		return
	}
	gone := make(map[uint64]bool, len(resp.Expired))
	for _, id := range resp.Expired {
		gone[id] = true
	}
	for _, s := range ss {
		if gone[s.id] {
			s.markLost()
		} else {
			s.acked(sent)
		}
	}
}

// wrapErr names the operation in an error that does not carry a fencer
// sentinel already.
func wrapErr(err error, what string) error {
	if errors.Is(err, fencer.ErrInvalid) || errors.Is(err, fencer.ErrLeaseLost) || errors.Is(err, fencer.ErrClosed) {
		return err
	}
	return fmt.Errorf("fencer server: %s: %w", what, err)
}
