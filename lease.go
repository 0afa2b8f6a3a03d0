package fencer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Lease is a granted lock, kept alive by its Client until Release.
//
// A lease can be lost at any moment: the store can expire it while this
// process is paused, drop it on a failover, or stop answering. The Lease
// signals loss through Done and Context as soon as it knows, and no later
// than its conservative validity (ValidUntil), which ends before the store
// could have expired it. That signal is best effort by nature: a process
// paused past ValidUntil learns of the loss only when it wakes. Only a
// fencing token checked by the storage makes a critical section safe.
//
// A Lease is safe for concurrent use. Release it when done; a lease that is
// never released is kept alive until its Client is closed.
type Lease struct {
	c     *Client
	name  string
	token Token
	ttl   time.Duration

	ctx    context.Context
	cancel context.CancelCauseFunc

	stopKeeper context.CancelFunc // stops renewals; called by Release
	keeperDone chan struct{}      // closed when the keeper goroutine returns

	mu         sync.Mutex
	grant      Grant
	validUntil time.Time
	released   bool
	validTimer *time.Timer
}

func newLease(parent context.Context, c *Client, g Grant, validUntil time.Time, renew bool) *Lease {
	l := &Lease{
		c:          c,
		name:       g.Name,
		token:      g.Token,
		ttl:        g.TTL,
		grant:      g,
		validUntil: validUntil,
		keeperDone: make(chan struct{}),
	}
	// The lease keeps the values of the acquiring context but not its
	// cancellation: ctx bounded the wait, not the lease.
	l.ctx, l.cancel = context.WithCancelCause(context.WithoutCancel(parent))
	var keeperCtx context.Context
	keeperCtx, l.stopKeeper = context.WithCancel(context.Background())
	l.validTimer = time.AfterFunc(time.Until(validUntil), l.checkValidity)
	go l.keep(keeperCtx, renew, g.Lost)
	return l
}

// Name returns the lock's name.
func (l *Lease) Name() string { return l.name }

// Token returns the fencing token of this grant, or NoToken if the backend
// issues none. Send it with every write to the resource the lock protects.
func (l *Lease) Token() Token { return l.token }

// SafeToken reports whether Token comes from a backend that declares
// Correctness, so a storage service may rely on it to fence stale writers.
func (l *Lease) SafeToken() bool { return l.c.info.SafeTokens() }

// Guarantee returns the guarantee of the backend that granted the lease.
func (l *Lease) Guarantee() Guarantee { return l.c.info.Guarantee }

// TTL returns the lease's time to live in the store.
func (l *Lease) TTL() time.Duration { return l.ttl }

// Done returns a channel that is closed when the lease is lost, may have
// been lost, or was released.
func (l *Lease) Done() <-chan struct{} { return l.ctx.Done() }

// Context returns a context that is cancelled when Done is closed. Its
// cause (context.Cause) wraps ErrLeaseLost or is ErrReleased. It carries the
// values of the context given to Acquire.
func (l *Lease) Context() context.Context { return l.ctx }

// Err returns nil while the lease is held, an error wrapping ErrLeaseLost
// once it is lost, and ErrReleased after Release.
func (l *Lease) Err() error {
	if l.ctx.Err() == nil {
		return nil
	}
	return context.Cause(l.ctx)
}

// ValidUntil returns the client's conservative view of the lease's end:
// the last successful request's send time + TTL − drift − a safety margin.
// Renewals move it forward.
func (l *Lease) ValidUntil() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.validUntil
}

// Remaining returns how long the lease stays valid by the client's
// conservative view, or zero once it is lost or released.
func (l *Lease) Remaining() time.Duration {
	if l.ctx.Err() != nil {
		return 0
	}
	return max(time.Until(l.ValidUntil()), 0)
}

// Release gives the lock up and stops its renewals. It returns an error
// wrapping ErrLeaseLost if the store no longer records this lease (it
// expired or was taken over), and nil when called again.
func (l *Lease) Release(ctx context.Context) error {
	l.mu.Lock()
	if l.released {
		l.mu.Unlock()
		return nil
	}
	l.released = true
	l.validTimer.Stop()
	l.mu.Unlock()

	l.stopKeeper()
	<-l.keeperDone
	l.mu.Lock()
	g := l.grant
	l.mu.Unlock()
	err := l.c.b.Release(ctx, g)
	l.cancel(ErrReleased)
	l.c.forget(l)
	return err
}

func (l *Lease) lose(cause error) {
	l.cancel(cause)
	l.c.log.Warn("lease lost", "lock", l.name, "token", uint64(l.token), "cause", cause)
}

// checkValidity runs when the validity timer fires. A renewal may have moved
// validUntil forward since the timer was set.
func (l *Lease) checkValidity() {
	l.mu.Lock()
	if l.released {
		l.mu.Unlock()
		return
	}
	if left := time.Until(l.validUntil); left > 0 {
		l.validTimer.Reset(left)
		l.mu.Unlock()
		return
	}
	vu := l.validUntil
	l.mu.Unlock()
	l.lose(fmt.Errorf("%w: lock %q: no successful renewal before its validity ran out at %s (TTL %v)",
		ErrLeaseLost, l.name, vu.Format(time.RFC3339Nano), l.ttl))
}

// keep renews the lease about every TTL/3 until ctx is cancelled (by
// Release), the lease is lost, or the backend reports it lost.
func (l *Lease) keep(ctx context.Context, renew bool, lost <-chan struct{}) {
	defer close(l.keeperDone)
	var tick <-chan time.Time
	var timer *time.Timer
	if renew {
		timer = time.NewTimer(l.ttl / 3)
		defer timer.Stop()
		tick = timer.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.ctx.Done():
			return
		case <-lost:
			l.lose(fmt.Errorf("%w: lock %q: the %s backend reported the lease gone", ErrLeaseLost, l.name, l.c.info.Kind))
			return
		case <-tick:
			next, err := l.renew(ctx)
			if errors.Is(err, ErrLeaseLost) {
				l.lose(err)
				return
			}
			timer.Reset(next)
		}
	}
}

// renew makes one renewal attempt and returns when to make the next.
func (l *Lease) renew(ctx context.Context) (time.Duration, error) {
	l.mu.Lock()
	g, deadline := l.grant, l.validUntil
	l.mu.Unlock()
	rctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	start := time.Now()
	ng, err := l.c.b.Renew(rctx, g)
	if err != nil {
		if ctx.Err() == nil && !errors.Is(err, ErrLeaseLost) {
			l.c.log.Debug("renewal failed; retrying", "lock", l.name, "err", err)
		}
		// Retry soon, but not in a tight loop against a sick store.
		return max(l.ttl/10, 5*time.Millisecond), err
	}
	if ng.Sent.IsZero() {
		ng.Sent = start
	}
	ng.Name, ng.TTL = g.Name, g.TTL
	vu := ValidUntil(ng.Sent, ng.TTL)
	l.mu.Lock()
	l.grant = ng
	if vu.After(l.validUntil) {
		l.validUntil = vu
	}
	l.mu.Unlock()
	return max(time.Until(ng.Sent.Add(l.ttl/3)), time.Millisecond), nil
}
