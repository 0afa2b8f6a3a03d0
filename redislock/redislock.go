package redislock

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/internal/backoff"
	"github.com/fencerlock/fencer/internal/rediskey"
	"github.com/fencerlock/fencer/internal/redissub"
)

var (
	//go:embed acquire.lua
	acquireLua string
	//go:embed renew.lua
	renewLua string
	//go:embed release.lua
	releaseLua string
)

// Backend is a fencer.Backend over one Redis deployment. See the package
// documentation for what it guarantees (efficiency, not correctness).
//
// A Backend is safe for concurrent use. Close it when done: Close stops the
// shared pub/sub connection of waiting acquires and, for a Backend made by
// Open, closes its Redis client. It does not release locks. Its errors are
// described on each method: fencer.ErrLocked, fencer.ErrLeaseLost,
// fencer.ErrClosed, *fencer.InvalidError, ctx's error, and Redis or network
// errors wrapped with the operation and lock name.
type Backend struct {
	client redis.UniversalClient
	owned  bool // made by Open: Close closes client
	prefix string
	minBO  time.Duration
	maxBO  time.Duration
	log    *slog.Logger
	sub    *redissub.Subscriber

	acquire, renew, release *redis.Script

	done chan struct{} // closed by Close; wakes waiters

	mu      sync.Mutex // guards closed and cleanup.Add
	closed  bool
	cleanup sync.WaitGroup // releases of grants whose reply was lost
}

var _ fencer.Backend = (*Backend)(nil)

// New returns a Backend over cfg.Client. It does not contact Redis; the
// first Acquire does. It returns an *fencer.InvalidError if cfg is not
// valid.
func New(cfg Config) (*Backend, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if ignoresCtxDeadlines(cfg.Client) {
		cfg.Logger.Warn("redislock: the Redis client ignores ctx deadlines on reads and writes; set ContextTimeoutEnabled in its options, or a request to a stopped server outlives its ctx")
	}
	return &Backend{
		client:  cfg.Client,
		prefix:  cfg.KeyPrefix,
		minBO:   cfg.MinBackoff,
		maxBO:   cfg.MaxBackoff,
		log:     cfg.Logger,
		sub:     redissub.New(cfg.Client, cfg.Logger),
		acquire: redis.NewScript(acquireLua),
		renew:   redis.NewScript(renewLua),
		release: redis.NewScript(releaseLua),
		done:    make(chan struct{}),
	}, nil
}

// Open returns a Backend with its own Redis client for a URL of the form
// redis://[user:password@]host:port[/db] (see ParseURL) and the default
// Config. Close closes the client.
func Open(url string) (*Backend, error) {
	opts, err := ParseURL(url)
	if err != nil {
		return nil, err
	}
	c := redis.NewClient(opts)
	b, err := New(Config{Client: c})
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	b.owned = true
	return b, nil
}

// Info reports Kind "redis", Guarantee Efficiency, and Tokens true: grants
// carry a token from the lock's counter, which is only as monotonic as the
// Redis instance's memory of it.
func (b *Backend) Info() fencer.BackendInfo {
	return fencer.BackendInfo{Kind: "redis", Guarantee: fencer.Efficiency, Tokens: true}
}

// Key returns the Redis key of the lock name, where the owner value of its
// current grant lives while it is held. The lock's token counter is
// Key(name)+":token" and its release channel Key(name)+":released". Tests
// and operators use it to inspect or delete a lock; deleting the key frees
// the lock, and its holder learns so at its next renewal.
func (b *Backend) Key(name string) string { return rediskey.Key(b.prefix, name) }

// keys returns the lock key and the token counter key, built as one string.
func (b *Backend) keys(name string) (lock, counter string) {
	var k strings.Builder
	rediskey.Write(&k, b.prefix, name, len(":token"))
	n := k.Len()
	k.WriteString(":token")
	s := k.String()
	return s[:n], s
}

// Acquire takes the lock req.Name with one script run (SET NX PX, then
// INCR of the lock's token counter). With req.Wait it waits for the lock as
// the package documentation describes.
//
// A try returns an error wrapping fencer.ErrLocked if the lock is held, and
// a Redis or network error as it is. A waiting Acquire rides out such
// errors (a restart, a failover in progress) with its back-off, and returns
// the last one only when every attempt has failed for a whole TTL. Acquire
// returns fencer.ErrClosed after Close and an error wrapping ctx.Err() when
// ctx ends first.
func (b *Backend) Acquire(ctx context.Context, req fencer.AcquireRequest) (fencer.Grant, error) {
	if err := b.check(ctx); err != nil {
		return fencer.Grant{}, err
	}
	if req.LockDelay != 0 {
		return fencer.Grant{}, &fencer.InvalidError{Field: "lock delay", Value: req.LockDelay.String(),
			Reason: "the redis backend has no lock-delay", Accepted: "0"}
	}
	a := attempt{name: req.Name, value: rediskey.NewValue(), ttl: rediskey.Millis(req.TTL)}
	a.lock, a.counter = b.keys(req.Name)
	sent := time.Now()
	token, pttl, err := b.try(ctx, &a)
	switch {
	case err == nil && token > 0:
		return fencer.Grant{Name: req.Name, Token: fencer.Token(token), TTL: req.TTL, Sent: sent, Handle: a.value}, nil
	case err != nil && (!req.Wait || ctx.Err() != nil):
		return fencer.Grant{}, err
	case err == nil && !req.Wait:
		return fencer.Grant{}, lockedErr(req.Name, a.lock, pttl)
	}
	return b.wait(ctx, req, &a, pttl, err)
}

// attempt is what every try of one Acquire sends.
type attempt struct {
	name, lock, counter string
	value               string // replaced after a try whose outcome is unknown
	ttl                 int64  // milliseconds
}

// try runs the acquire script once. It returns the token (> 0) of a grant,
// or 0 and the holder's remaining TTL (-1 if unknown) if the lock is held.
func (b *Backend) try(ctx context.Context, a *attempt) (int64, time.Duration, error) {
	r, err := b.acquire.Run(ctx, b.client, []string{a.lock, a.counter}, a.value, a.ttl).Int64()
	switch {
	case err != nil:
		return 0, -1, b.acquireErr(ctx, a, err)
	case r > 0:
		return r, 0, nil
	case r == 0:
		return 0, -1, nil
	default:
		return 0, time.Duration(-1-r) * time.Millisecond, nil
	}
}

// wait is Acquire's wait for a lock whose first try found it held (or
// failed with err).
//
// It subscribes to the lock's release channel, then tries again as soon as
// the subscription is in effect: a release between the first try and the
// subscription is caught by that try, and one after it is published to
// this waiter. After that it tries again whenever a release is published,
// when the jittered back-off fires, and when the holder's TTL runs out.
func (b *Backend) wait(ctx context.Context, req fencer.AcquireRequest, a *attempt, pttl time.Duration, err error) (fencer.Grant, error) {
	var failingSince time.Time
	if err != nil {
		failingSince = time.Now()
	}
	channel := a.lock + ":released"
	w := redissub.NewWaiter(1)
	if err := b.sub.Watch(channel, w); err != nil {
		return fencer.Grant{}, fencer.ErrClosed
	}
	defer b.sub.Unwatch(channel, w)

	bo := backoff.New(b.minBO, b.maxBO)
	timer := time.NewTimer(bo.Next(pttl))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return fencer.Grant{}, fmt.Errorf("redislock: waiting for lock %q: %w", req.Name, ctx.Err())
		case <-b.done:
			return fencer.Grant{}, fencer.ErrClosed
		case <-w.Wake:
		case <-timer.C:
		}
		sent := time.Now()
		token, pttl, err := b.try(ctx, a)
		switch {
		case err != nil:
			if failingSince.IsZero() {
				failingSince = sent
			}
			if ctx.Err() != nil || time.Since(failingSince) >= req.TTL {
				return fencer.Grant{}, err
			}
		case token > 0:
			return fencer.Grant{Name: req.Name, Token: fencer.Token(token), TTL: req.TTL, Sent: sent, Handle: a.value}, nil
		default:
			failingSince = time.Time{}
		}
		timer.Reset(bo.Next(pttl))
	}
}

// acquireErr wraps an error of the acquire script. If the script may have
// run without its reply arriving (a network error, ctx ended), the lock may
// now be held under a.value: a release in the background frees it at once
// instead of after its TTL, and a.value is replaced so that a later try of
// the same Acquire is not undone by that release.
func (b *Backend) acquireErr(ctx context.Context, a *attempt, err error) error {
	var reply redis.Error
	if !errors.As(err, &reply) {
		b.abandon(a.lock, a.value)
		a.value = rediskey.NewValue()
	}
	return opErr(ctx, "acquire", a.name, err)
}

// abandon releases lock if it holds value, in the background, bounded in
// time. Close waits for it.
func (b *Backend) abandon(lock, value string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.cleanup.Add(1)
	go func() {
		defer b.cleanup.Done()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := b.release.Run(ctx, b.client, []string{lock}, value).Err(); err != nil {
			b.log.Debug("redislock: release of a grant whose reply was lost failed; it expires with its TTL", "key", lock, "err", err)
		}
	}()
}

func lockedErr(name, key string, pttl time.Duration) error {
	if pttl < 0 {
		return fmt.Errorf("%w: redis lock %q (key %s) is held with no expiry; it was not set by fencer", fencer.ErrLocked, name, key)
	}
	return fmt.Errorf("%w: redis lock %q is held; it expires in %v unless its holder renews it", fencer.ErrLocked, name, pttl)
}

// Renew resets the TTL of g's lock to g.TTL if the lock still holds g's
// owner value (one script run: compare and PEXPIRE). It returns an error
// wrapping fencer.ErrLeaseLost if it does not: the lock expired, was
// deleted, or belongs to another owner, who is not disturbed.
func (b *Backend) Renew(ctx context.Context, g fencer.Grant) (fencer.Grant, error) {
	if err := b.check(ctx); err != nil {
		return fencer.Grant{}, err
	}
	value, err := handle(g)
	if err != nil {
		return fencer.Grant{}, err
	}
	lock := b.Key(g.Name)
	sent := time.Now()
	r, err := b.renew.Run(ctx, b.client, []string{lock}, value, rediskey.Millis(g.TTL)).Int64()
	if err != nil {
		return fencer.Grant{}, opErr(ctx, "renew", g.Name, err)
	}
	if r != 1 {
		return fencer.Grant{}, fmt.Errorf("%w: redis lock %q (token %v) expired or has another owner", fencer.ErrLeaseLost, g.Name, g.Token)
	}
	g.Sent = sent
	return g, nil
}

// Release deletes g's lock if it still holds g's owner value and announces
// the release to waiters (one script run: compare, DEL, PUBLISH). It
// returns an error wrapping fencer.ErrLeaseLost if the lock expired, was
// deleted, or belongs to another owner, who is not disturbed.
func (b *Backend) Release(ctx context.Context, g fencer.Grant) error {
	if err := b.check(ctx); err != nil {
		return err
	}
	value, err := handle(g)
	if err != nil {
		return err
	}
	lock := b.Key(g.Name)
	r, err := b.release.Run(ctx, b.client, []string{lock}, value).Int64()
	if err != nil {
		return opErr(ctx, "release", g.Name, err)
	}
	if r != 1 {
		return fmt.Errorf("%w: redis lock %q (token %v) expired or has another owner", fencer.ErrLeaseLost, g.Name, g.Token)
	}
	return nil
}

// Close stops the pub/sub connection and its goroutines, waits for
// background releases of grants whose reply was lost, and closes the Redis
// client if Open made it. If the server stopped answering, Close can take up
// to a second (the bound on a pub/sub write) or, for a client without
// ContextTimeoutEnabled, its ReadTimeout. Waiting Acquires return
// fencer.ErrClosed, as do calls after Close.
func (b *Backend) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	close(b.done)
	b.mu.Unlock()
	b.sub.Close()
	b.cleanup.Wait()
	if b.owned {
		return b.client.Close()
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

func handle(g fencer.Grant) (string, error) {
	v, ok := g.Handle.(string)
	if !ok || len(v) != 32 {
		return "", &fencer.InvalidError{Field: "grant handle", Value: fmt.Sprintf("%T", g.Handle),
			Reason: "it is not a grant of a redislock backend", Accepted: "a Grant returned by this backend's Acquire or Renew"}
	}
	return v, nil
}

func opErr(ctx context.Context, op, name string, err error) error {
	err = fmt.Errorf("redislock: %s %q: %w", op, name, err)
	if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
		err = errors.Join(err, ctxErr)
	}
	return err
}
