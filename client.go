package fencer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Options tune one Acquire. The zero value (or a nil *Options) asks for a
// DefaultTTL lease, renewed automatically, from any backend.
type Options struct {
	// TTL is how long the store keeps the lock if the holder stops renewing
	// it: MinTTL to MaxTTL. Zero means DefaultTTL (15 s).
	TTL time.Duration

	// NoRenew switches automatic renewal off: the lease then ends at its
	// first conservative expiry unless the holder releases it first.
	NoRenew bool

	// Require makes Acquire fail with ErrGuarantee unless the backend gives
	// at least this guarantee. Zero accepts any backend. Set it to
	// Correctness in code whose safety depends on the lock, so that a
	// misconfigured URL cannot silently hand out an efficiency lock.
	Require Guarantee

	// LockDelay, when non-zero, keeps the lock from being granted to anyone
	// for this long after this lease expires without a release (from
	// Chubby). Zero means none. Only the fencer server backend supports it.
	LockDelay time.Duration
}

// Config configures a Client. A nil *Config, or a zero field, means the
// default.
type Config struct {
	// Logger receives renewal failures at Debug and lease losses at Warn.
	// Nil discards them.
	Logger *slog.Logger
}

// Client hands out leases on named locks from one Backend, and keeps them:
// it renews each lease in the background and signals, through the lease's
// Done channel, the moment the lease is lost or may have been lost.
//
// A Client is safe for concurrent use. Close it when done: Close releases
// the leases still held and then closes the backend.
type Client struct {
	b    Backend
	info BackendInfo
	log  *slog.Logger

	mu     sync.Mutex
	leases map[*Lease]struct{}
	closed bool

	// Close cancels closing to make waiting Acquires return, and waits for
	// them (inflight) before it closes the backend.
	closing      context.Context
	stopAcquires context.CancelFunc
	inflight     sync.WaitGroup
}

// New returns a Client over b. The Client owns b from now on and closes it
// in Close.
func New(b Backend, cfg *Config) *Client {
	c := &Client{b: b, info: b.Info(), leases: make(map[*Lease]struct{})}
	c.closing, c.stopAcquires = context.WithCancel(context.Background())
	if cfg != nil && cfg.Logger != nil {
		c.log = cfg.Logger
	} else {
		c.log = slog.New(slog.DiscardHandler)
	}
	return c
}

// Info describes the client's backend.
func (c *Client) Info() BackendInfo { return c.info }

// Acquire blocks until the lock name is granted, then returns its lease. It
// returns early with an error wrapping ctx's error when ctx is done. ctx only
// bounds the wait: the lease outlives it.
func (c *Client) Acquire(ctx context.Context, name string, opts *Options) (*Lease, error) {
	return c.acquire(ctx, name, opts, true)
}

// TryAcquire makes one attempt and returns an error wrapping ErrLocked if
// another owner holds the lock.
func (c *Client) TryAcquire(ctx context.Context, name string, opts *Options) (*Lease, error) {
	return c.acquire(ctx, name, opts, false)
}

func (c *Client) request(name string, opts *Options, wait bool) (AcquireRequest, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.TTL == 0 {
		o.TTL = DefaultTTL
	}
	if err := ValidateName(name); err != nil {
		return AcquireRequest{}, err
	}
	if err := ValidateTTL(o.TTL); err != nil {
		return AcquireRequest{}, err
	}
	if err := ValidateLockDelay(o.LockDelay); err != nil {
		return AcquireRequest{}, err
	}
	if o.LockDelay != 0 && !c.info.LockDelay {
		return AcquireRequest{}, &InvalidError{Field: "lock delay", Value: o.LockDelay.String(),
			Reason: "the " + c.info.Kind + " backend has no lock-delay", Accepted: "0 on this backend; a lock delay on the fencer server backend"}
	}
	switch o.Require {
	case 0, Efficiency:
	case Correctness:
		if c.info.Guarantee != Correctness {
			return AcquireRequest{}, fmt.Errorf("%w: the %s backend gives %s, and the options require %s; use a fencer:// or postgres:// backend",
				ErrGuarantee, c.info.Kind, c.info.Guarantee, o.Require)
		}
	default:
		return AcquireRequest{}, &InvalidError{Field: "required guarantee", Value: o.Require.String(), Accepted: "0, Efficiency or Correctness"}
	}
	return AcquireRequest{Name: name, TTL: o.TTL, Wait: wait, LockDelay: o.LockDelay}, nil
}

func (c *Client) acquire(ctx context.Context, name string, opts *Options, wait bool) (*Lease, error) {
	req, err := c.request(name, opts, wait)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	c.inflight.Add(1)
	c.mu.Unlock()
	defer c.inflight.Done()
	// Close ends the wait: the backend must not be closed under a call.
	callerCtx := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(c.closing, cancel)()
	for {
		start := time.Now()
		g, err := c.b.Acquire(ctx, req)
		if err != nil {
			if c.closing.Err() != nil && callerCtx.Err() == nil {
				return nil, errors.Join(ErrClosed, err)
			}
			if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
				err = errors.Join(err, ctxErr)
			}
			return nil, err
		}
		if g.Sent.IsZero() {
			g.Sent = start
		}
		g.Name, g.TTL = req.Name, req.TTL
		validUntil := ValidUntil(g.Sent, g.TTL)
		if time.Now().Before(validUntil) {
			l, err := c.keep(callerCtx, g, validUntil, opts == nil || !opts.NoRenew)
			if err != nil {
				c.releaseQuietly(g)
			}
			return l, err
		}
		// The reply came back after the lease's conservative validity: the
		// store may already have expired it. Give it back and try again.
		c.releaseQuietly(g)
		late := fmt.Errorf("fencer: lock %q was granted, but the reply came %v after the request, past the %v lease's validity; use a longer TTL",
			name, time.Since(g.Sent).Round(time.Millisecond), g.TTL)
		if !wait {
			return nil, late
		}
		c.log.Warn("lease arrived already expired; retrying", "lock", name, "err", late)
		if err := ctx.Err(); err != nil {
			return nil, errors.Join(late, err)
		}
	}
}

// releaseQuietly gives back a grant nobody will hold, bounded in time.
func (c *Client) releaseQuietly(g Grant) {
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout(g.TTL))
	defer cancel()
	if err := c.b.Release(ctx, g); err != nil {
		c.log.Debug("release of an unused grant failed", "lock", g.Name, "err", err)
	}
}

func releaseTimeout(ttl time.Duration) time.Duration {
	return min(max(ttl, time.Second), 5*time.Second)
}

func (c *Client) keep(ctx context.Context, g Grant, validUntil time.Time, renew bool) (*Lease, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	l := newLease(ctx, c, g, validUntil, renew)
	c.leases[l] = struct{}{}
	return l, nil
}

func (c *Client) forget(l *Lease) {
	c.mu.Lock()
	delete(c.leases, l)
	c.mu.Unlock()
}

// Close makes waiting Acquires return ErrClosed and waits for them,
// releases every lease still held, waits for their keepers to stop, and
// closes the backend. Acquire and TryAcquire fail with ErrClosed
// afterwards. Close returns the backend's Close error joined with any
// release error.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.stopAcquires()
	c.inflight.Wait()
	c.mu.Lock()
	leases := make([]*Lease, 0, len(c.leases))
	for l := range c.leases {
		leases = append(leases, l)
	}
	c.mu.Unlock()
	var errs []error
	for _, l := range leases {
		ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout(l.ttl))
		if err := l.Release(ctx); err != nil && !errors.Is(err, ErrLeaseLost) {
			errs = append(errs, err)
		}
		cancel()
	}
	errs = append(errs, c.b.Close())
	return errors.Join(errs...)
}
