package pglock

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/internal/backoff"
)

// Backend is a fencer.Backend over a lock table in one PostgreSQL
// database. See the package documentation for what it guarantees
// (correctness, for a single durable database) and how it works.
//
// A Backend is safe for concurrent use. Close it when done: Close stops the
// shared listening connection of waiting acquires, waits for background
// clean-ups and, for a Backend made by Open or from a Config.URL, closes
// its pool. It does not release locks.
type Backend struct {
	pool  *pgxpool.Pool
	owned bool // made from a URL: Close closes pool
	names names
	sql   statements
	minBO time.Duration
	maxBO time.Duration
	log   *slog.Logger
	lis   *listener

	schemaSem chan struct{}            // capacity 1: one schema check at a time
	id        atomic.Pointer[identity] // set by the first schema check that succeeds

	done chan struct{} // closed by Close; wakes waiters

	mu      sync.Mutex // guards closed and cleanup.Add
	closed  bool
	cleanup sync.WaitGroup // releases after attempts whose reply was lost
}

var _ fencer.Backend = (*Backend)(nil)

// New returns a Backend over cfg.Pool, or over a pool of its own for
// cfg.URL. It does not contact the database: the first Acquire does, and
// creates the lock table then if it is missing. ctx bounds the creation of
// the pool only. New returns an *fencer.InvalidError if cfg is not valid.
func New(ctx context.Context, cfg Config) (*Backend, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	pool, owned := cfg.Pool, false
	if cfg.URL != "" {
		pc, err := poolConfig(cfg.URL)
		if err != nil {
			return nil, err
		}
		if pool, err = pgxpool.NewWithConfig(ctx, pc); err != nil {
			return nil, fmt.Errorf("pglock: make a connection pool for %s: %w", redactURL(cfg.URL), err)
		}
		owned = true
	}
	n := namesOf(cfg.Table)
	return &Backend{
		pool:      pool,
		owned:     owned,
		names:     n,
		sql:       newStatements(n),
		minBO:     cfg.MinBackoff,
		maxBO:     cfg.MaxBackoff,
		log:       cfg.Logger,
		lis:       newListener(pool.Config().ConnConfig, cfg.Logger),
		schemaSem: make(chan struct{}, 1),
		done:      make(chan struct{}),
	}, nil
}

// Open returns a Backend with a pool of its own for a postgres:// or
// postgresql:// URL, in the form pgx (and libpq) accept:
//
//	postgres://[user[:password]@]host[:port][/database][?param=value&...]
//
// Parameters such as sslmode, connect_timeout and pool_max_conns are
// pgx's; unknown ones are sent to the server as settings. The rest of the
// Config is the default. Open does not contact the database; errors about
// the URL are *fencer.InvalidError, and connection errors are reported by
// the first Acquire. Close closes the pool.
func Open(ctx context.Context, url string) (*Backend, error) {
	if url == "" {
		_, err := poolConfig(url) // says what an empty URL lacks
		return nil, err
	}
	return New(ctx, Config{URL: url})
}

// Info reports Kind "postgres", Guarantee Correctness and Tokens true:
// grants carry a token from a sequence, which strictly increases with every
// grant and survives restarts of a durable database.
func (b *Backend) Info() fencer.BackendInfo {
	return fencer.BackendInfo{Kind: "postgres", Guarantee: fencer.Correctness, Tokens: true}
}

// ownerID is the owner value of one Acquire call: 128 bits from
// crypto/rand, kept in the lock's row while it holds the lock. A Grant's
// Handle is one.
type ownerID [16]byte

func newOwner() ownerID {
	var o ownerID
	_, _ = rand.Read(o[:]) // never fails (crypto/rand, Go 1.24+)
	return o
}

func (o ownerID) uuid() pgtype.UUID { return pgtype.UUID{Bytes: o, Valid: true} }

// micros rounds ttl up to whole microseconds, PostgreSQL's resolution, so
// that the database never keeps a lease for less than the TTL the Client
// measures validity from.
func micros(ttl time.Duration) int64 {
	return int64((ttl + time.Microsecond - 1) / time.Microsecond)
}

// attempt is what every try of one Acquire sends.
type attempt struct {
	name  string
	owner ownerID
	ttl   time.Duration
	key   int32 // the second key of the lock's advisory lock
}

// Acquire takes the lock req.Name, as the package documentation describes.
// A try is one statement, one round trip; with req.Wait, each attempt adds
// a second statement to the same round trip, which marks a held lock's row
// as waited for, and Acquire waits for the lock, woken by the release's
// notification. (The first Acquire of a Backend also checks the table, and
// creates it if it is missing, in a transaction of its own.)
//
// A try returns an error wrapping fencer.ErrLocked if another owner holds
// the lock, and a database or network error as it is (wrapped). A waiting
// Acquire rides out errors that may go away by themselves (a restart, a
// failover in progress, a broken connection) until ctx ends, and returns
// at once on others (authentication, privileges, a missing database).
// Acquire returns fencer.ErrClosed after Close, and an error wrapping
// ctx.Err() when ctx ends first. If an attempt's reply was lost and the
// Acquire then gives up, the lock is released in the background, in case
// that attempt took it.
func (b *Backend) Acquire(ctx context.Context, req fencer.AcquireRequest) (fencer.Grant, error) {
	if err := b.check(ctx); err != nil {
		return fencer.Grant{}, err
	}
	if req.LockDelay != 0 {
		return fencer.Grant{}, &fencer.InvalidError{Field: "lock delay", Value: req.LockDelay.String(),
			Reason: "the postgres backend has no lock-delay", Accepted: "0"}
	}
	if err := fencer.ValidateName(req.Name); err != nil {
		return fencer.Grant{}, err
	}
	if err := fencer.ValidateTTL(req.TTL); err != nil {
		return fencer.Grant{}, err
	}
	a := &attempt{name: req.Name, owner: newOwner(), ttl: req.TTL, key: keyOf(req.Name)}
	if req.Wait {
		return b.wait(ctx, a)
	}
	id, err := b.ensureSchema(ctx)
	var token int64
	var sent time.Time
	if err == nil {
		token, _, sent, err = b.try(ctx, id, a, false, false)
	}
	switch {
	case err != nil:
		if unknownOutcome(err) {
			b.abandon(id, a)
		}
		return fencer.Grant{}, opErr(ctx, "acquire", a.name, err)
	case token == 0:
		return fencer.Grant{}, fmt.Errorf("%w: postgres lock %q is held by another owner", fencer.ErrLocked, a.name)
	}
	return a.grant(token, sent), nil
}

func (a *attempt) grant(token int64, sent time.Time) fencer.Grant {
	return fencer.Grant{Name: a.name, Token: fencer.Token(token), TTL: a.ttl, Sent: sent, Handle: a.owner}
}

// try makes one attempt. It returns the token (> 0) of a grant, or 0 if
// another owner holds the lock. With mark, it also marks the holder's row
// as waited for and returns how long the holder's lease has left by the
// database's clock: -1 if unknown, or if the lock looked free. waited says
// that earlier attempts of this Acquire found the lock held: a grant then
// starts out marked as waited for (see acquireSQL).
//
// sent is taken after a connection was obtained from the pool, just before
// the statement is sent.
func (b *Backend) try(ctx context.Context, id *identity, a *attempt, mark, waited bool) (token int64, left time.Duration, sent time.Time, err error) {
	conn, err := b.pool.Acquire(ctx)
	if err != nil {
		return 0, -1, time.Time{}, &notSentError{err}
	}
	defer conn.Release()
	owner := a.owner.uuid()
	args := []any{a.name, owner, micros(a.ttl), id.class, a.key, waited}
	sent = time.Now()
	if !mark {
		err = conn.QueryRow(ctx, b.sql.acquire, args...).Scan(&token)
		if errors.Is(err, pgx.ErrNoRows) {
			return 0, -1, sent, nil
		}
		return token, -1, sent, err
	}
	// Both statements go in one round trip and one transaction.
	batch := &pgx.Batch{}
	batch.Queue(b.sql.acquire, args...)
	batch.Queue(b.sql.mark, a.name, owner)
	br := conn.SendBatch(ctx, batch)
	left = -1
	err = br.QueryRow().Scan(&token)
	if errors.Is(err, pgx.ErrNoRows) {
		err = nil
	}
	if err == nil {
		var us int64
		switch err = br.QueryRow().Scan(&us); {
		case errors.Is(err, pgx.ErrNoRows):
			err = nil
		case err == nil:
			left = time.Duration(max(us, 0)) * time.Microsecond
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, -1, sent, err
	}
	return token, left, sent, nil
}

// wait is Acquire with req.Wait.
//
// It registers with the listener before its first attempt (once it knows
// the table, whose channel the listener LISTENs on), so a release that
// commits after that attempt wakes it (and if the listener is still
// connecting, it wakes every waiter once its LISTEN is in effect). Each
// attempt that finds the lock held also sets the row's waiters flag, which
// makes the holder's release notify. Between attempts it sleeps until a
// notification for the lock, the jittered back-off, or the moment the
// holder's lease runs out by the database's clock, whichever comes first.
func (b *Backend) wait(ctx context.Context, a *attempt) (fencer.Grant, error) {
	w := newWaiter()
	watching := false
	defer func() {
		if watching {
			b.lis.unwatch(a.name, w)
		}
	}()

	bo := backoff.New(b.minBO, b.maxBO)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var (
		lastErr  error // of the last attempt, if it failed
		unknown  bool  // an attempt may have taken the lock without our knowing
		retried  bool  // the last attempt found the lock free, and lost the race
		waited   bool  // an attempt found the lock held
		id       *identity
		giveUpBy = func(err error) (fencer.Grant, error) {
			if unknown {
				b.abandon(id, a)
			}
			return fencer.Grant{}, err
		}
	)
	for {
		var err error
		if id == nil {
			id, err = b.ensureSchema(ctx)
		}
		if err == nil && !watching {
			if err := b.lis.watch(id.channel, a.name, w); err != nil {
				return fencer.Grant{}, fencer.ErrClosed
			}
			watching = true
		}
		var token int64
		var sent time.Time
		left := time.Duration(-1)
		if err == nil {
			token, left, sent, err = b.try(ctx, id, a, true, waited)
		}
		var delay time.Duration
		switch {
		case err == nil && token > 0:
			return a.grant(token, sent), nil
		case err != nil:
			unknown = unknown || unknownOutcome(err)
			err = opErr(ctx, "acquire", a.name, err)
			if ctx.Err() != nil || !transient(err) {
				return giveUpBy(err)
			}
			b.log.Debug("pglock: acquire failed; retrying", "lock", a.name, "err", err)
			lastErr, retried = err, false
			delay = bo.Next(-1)
		case left < 0 && !retried:
			// The lock looked free after the attempt found it held: it was
			// released in between. Try again at once, but only once in a row.
			lastErr, retried, waited = nil, true, true
		default:
			lastErr, retried, waited = nil, false, true
			delay = bo.Next(left)
		}
		timer.Reset(delay)
		select {
		case <-ctx.Done():
			err := fmt.Errorf("pglock: waiting for lock %q: %w", a.name, ctx.Err())
			if lastErr != nil {
				err = fmt.Errorf("%w (the last attempt failed: %w)", err, lastErr)
			}
			return giveUpBy(err)
		case <-b.done:
			return giveUpBy(fencer.ErrClosed)
		case <-w.wake:
		case <-timer.C:
		}
	}
}

// ensureSchema creates and checks the schema once per Backend (again after
// a failure), and returns the table's identity.
func (b *Backend) ensureSchema(ctx context.Context) (*identity, error) {
	if id := b.id.Load(); id != nil {
		return id, nil
	}
	select {
	case b.schemaSem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-b.done:
		return nil, fencer.ErrClosed
	}
	defer func() { <-b.schemaSem }()
	if id := b.id.Load(); id != nil {
		return id, nil
	}
	id, err := b.createSchema(ctx)
	if raceLost(err) {
		id, err = b.createSchema(ctx)
	}
	if err != nil {
		return nil, err
	}
	b.id.Store(id)
	return id, nil
}

// abandon releases the lock of an Acquire that gave up after an attempt
// whose outcome is unknown, in the background, bounded in time. Close waits
// for it. A nil id means no attempt was made: the schema check failed.
func (b *Backend) abandon(id *identity, a *attempt) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || id == nil {
		return
	}
	b.cleanup.Add(1)
	go func() {
		defer b.cleanup.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if _, err := b.pool.Exec(ctx, b.sql.abandon, a.name, a.owner.uuid(), id.channel); err != nil {
			b.log.Debug("pglock: release of an abandoned attempt failed; the lock frees when its TTL runs out", "lock", a.name, "err", err)
		}
	}()
}

// Renew extends g's lease to g.TTL from now, by the database's clock, if
// the lock's row still holds g's owner value and token and has not expired
// (one UPDATE). It returns an error wrapping fencer.ErrLeaseLost if it does
// not: the lease expired, the row was deleted, or another owner holds the
// lock, who is not disturbed.
func (b *Backend) Renew(ctx context.Context, g fencer.Grant) (fencer.Grant, error) {
	if err := b.check(ctx); err != nil {
		return fencer.Grant{}, err
	}
	owner, err := handle(g)
	if err != nil {
		return fencer.Grant{}, err
	}
	conn, err := b.pool.Acquire(ctx)
	if err != nil {
		return fencer.Grant{}, opErr(ctx, "renew", g.Name, err)
	}
	defer conn.Release()
	sent := time.Now()
	tag, err := conn.Exec(ctx, b.sql.renew, g.Name, owner.uuid(), int64(g.Token), micros(g.TTL))
	if err != nil {
		return fencer.Grant{}, opErr(ctx, "renew", g.Name, err)
	}
	if tag.RowsAffected() != 1 {
		return fencer.Grant{}, fmt.Errorf("%w: postgres lock %q (token %v) expired, was deleted, or has another owner", fencer.ErrLeaseLost, g.Name, g.Token)
	}
	g.Sent = sent
	return g, nil
}

// Release deletes g's lock if its row still holds g's owner value and
// token, and notifies waiters in the same transaction (one statement). It
// returns an error wrapping fencer.ErrLeaseLost if the row is gone or
// belongs to another owner, who is not disturbed, and also if the lease had
// already expired by the database's clock (the row is deleted all the
// same: nobody else took it).
func (b *Backend) Release(ctx context.Context, g fencer.Grant) error {
	if err := b.check(ctx); err != nil {
		return err
	}
	owner, err := handle(g)
	if err != nil {
		return err
	}
	// A grant comes from an Acquire, which learnt the identity first.
	id := b.id.Load()
	if id == nil {
		return &fencer.InvalidError{Field: "grant", Value: g.Name,
			Reason: "this Backend has granted nothing yet", Accepted: "a Grant returned by this backend's Acquire or Renew"}
	}
	var live bool
	err = b.pool.QueryRow(ctx, b.sql.release, g.Name, owner.uuid(), int64(g.Token), id.channel).Scan(&live)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("%w: postgres lock %q (token %v) expired and was taken over, was deleted, or has another owner", fencer.ErrLeaseLost, g.Name, g.Token)
	case err != nil:
		return opErr(ctx, "release", g.Name, err)
	case !live:
		return fmt.Errorf("%w: postgres lock %q (token %v) had expired by the database's clock before the release", fencer.ErrLeaseLost, g.Name, g.Token)
	}
	return nil
}

// Close stops the listening connection and its goroutine, waits for
// background releases of attempts whose reply was lost, and closes the pool
// if the Backend made it. Waiting Acquires return fencer.ErrClosed, and
// calls after Close fail with it. Close does not release locks.
func (b *Backend) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	close(b.done)
	b.mu.Unlock()
	b.lis.close()
	b.cleanup.Wait()
	if b.owned {
		b.pool.Close()
	}
	return nil
}

// check returns fencer.ErrClosed after Close and ctx's error once ctx is
// done.
func (b *Backend) check(ctx context.Context) error {
	select {
	case <-b.done:
		return fencer.ErrClosed
	default:
	}
	return ctx.Err()
}

func handle(g fencer.Grant) (ownerID, error) {
	o, ok := g.Handle.(ownerID)
	if !ok {
		return ownerID{}, &fencer.InvalidError{Field: "grant handle", Value: fmt.Sprintf("%T", g.Handle),
			Reason: "it is not a grant of a pglock backend", Accepted: "a Grant returned by this backend's Acquire or Renew"}
	}
	return o, nil
}

func opErr(ctx context.Context, op, name string, err error) error {
	err = fmt.Errorf("pglock: %s %q: %w", op, name, err)
	if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
		err = errors.Join(err, ctxErr)
	}
	return err
}
