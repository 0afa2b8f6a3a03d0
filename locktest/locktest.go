package locktest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/internal/testutil"
)

// Target is one running store under test.
type Target struct {
	// New returns a new Backend connected to the store, with its own
	// connections, as another client process would have. The suite closes
	// it. Required.
	New func(t *testing.T) fencer.Backend

	// URL is the store's backend URL for `fencer run` in other processes.
	// Empty skips the cross-process test.
	URL string

	// Delete removes the lock name from the store behind its holder's back.
	// Nil skips the test that needs it.
	Delete func(t *testing.T, name string)

	// Outage makes the store stop answering until the test ends (SIGSTOP,
	// say). Nil skips the test that needs it.
	Outage func(t *testing.T)
}

// Harness starts stores for the suite.
type Harness struct {
	// Start starts a store and arranges for it to stop when t ends. Run
	// calls it once for the tests that can share a store and once more for
	// each test that breaks its store.
	Start func(t *testing.T) *Target
}

// Run runs the conformance suite as subtests of t.
func Run(t *testing.T, h Harness) {
	shared := h.Start(t)
	s := &suite{target: shared}
	for _, tc := range []struct {
		name string
		fn   func(*testing.T)
	}{
		{"Validation", s.validation},
		{"Guarantee", s.guarantee},
		{"TryLocked", s.tryLocked},
		{"Tokens", s.tokens},
		{"MutualExclusion", s.mutualExclusion},
		{"CrossProcess", s.crossProcess},
		{"ExpiryAfterHolderStops", s.expiry},
		{"StaleOwnerRefused", s.staleOwnerRefused},
		{"ContextCancel", s.contextCancel},
		{"HandOff", s.handOff},
		{"LossWhenValidityRunsOut", s.lossOnValidity},
		{"LossWhenDeleted", s.lossOnDelete},
		{"ReleaseTwice", s.releaseTwice},
	} {
		t.Run(tc.name, tc.fn)
	}
	t.Run("LossWhenStoreGoesAway", func(t *testing.T) {
		target := h.Start(t)
		if target.Outage == nil {
			t.Skip("the harness cannot take the store away")
		}
		(&suite{target: target}).lossOnOutage(t)
	})
}

type suite struct {
	target *Target
	n      atomic.Int64
}

// name returns a lock name unique to this run of the suite.
func (s *suite) name(t *testing.T) string {
	return fmt.Sprintf("locktest/%s/%d/%d", strings.ReplaceAll(t.Name(), "/", "."), time.Now().UnixNano(), s.n.Add(1))
}

func (s *suite) client(t *testing.T) *fencer.Client {
	t.Helper()
	c := fencer.New(s.target.New(t), nil)
	t.Cleanup(func() { c.Close() })
	return c
}

func (s *suite) backend(t *testing.T) fencer.Backend {
	t.Helper()
	b := s.target.New(t)
	t.Cleanup(func() { b.Close() })
	return b
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func release(t *testing.T, l *fencer.Lease) {
	t.Helper()
	if err := l.Release(ctxT(t, 10*time.Second)); err != nil {
		t.Fatalf("release %q: %v", l.Name(), err)
	}
}

func (s *suite) validation(t *testing.T) {
	c := s.client(t)
	ctx := ctxT(t, 10*time.Second)
	for _, tc := range []struct {
		name string
		lock string
		opts *fencer.Options
	}{
		{"EmptyName", "", nil},
		{"LongName", strings.Repeat("x", fencer.MaxNameLen+1), nil},
		{"InvalidUTF8", "bad\xff", nil},
		{"ControlChar", "a\nb", nil},
		{"TTLTooShort", "ok", &fencer.Options{TTL: time.Millisecond}},
		{"TTLTooLong", "ok", &fencer.Options{TTL: 25 * time.Hour}},
		{"NegativeTTL", "ok", &fencer.Options{TTL: -time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := c.TryAcquire(ctx, tc.lock, tc.opts)
			if !errors.Is(err, fencer.ErrInvalid) {
				if l != nil {
					l.Release(ctx)
				}
				t.Fatalf("TryAcquire(%q, %+v) = %v, want an error matching ErrInvalid", tc.lock, tc.opts, err)
			}
			if !strings.Contains(err.Error(), "accepted") {
				t.Errorf("error %q does not say what is accepted", err)
			}
		})
	}
	// The longest valid name works, so the limit is not off by one.
	l, err := c.TryAcquire(ctx, fmt.Sprintf("%s%020d", strings.Repeat("n", fencer.MaxNameLen-20), time.Now().UnixNano()), nil)
	if err != nil {
		t.Fatalf("TryAcquire with a %d-byte name: %v", fencer.MaxNameLen, err)
	}
	release(t, l)
}

func (s *suite) guarantee(t *testing.T) {
	c := s.client(t)
	ctx := ctxT(t, 10*time.Second)
	l, err := c.TryAcquire(ctx, s.name(t), &fencer.Options{Require: fencer.Correctness})
	switch c.Info().Guarantee {
	case fencer.Correctness:
		if err != nil {
			t.Fatalf("a correctness backend refused Require: Correctness: %v", err)
		}
		if !l.SafeToken() || l.Token() == fencer.NoToken {
			t.Errorf("a correctness backend's lease: SafeToken %v, Token %v; want a safe, non-zero token", l.SafeToken(), l.Token())
		}
		release(t, l)
	case fencer.Efficiency:
		if !errors.Is(err, fencer.ErrGuarantee) {
			t.Fatalf("an efficiency backend with Require: Correctness gave %v, want ErrGuarantee", err)
		}
		l, err := c.TryAcquire(ctx, s.name(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		if l.SafeToken() {
			t.Errorf("an efficiency backend's lease claims a safe token")
		}
		release(t, l)
	default:
		t.Fatalf("backend declares guarantee %v", c.Info().Guarantee)
	}
}

func (s *suite) tryLocked(t *testing.T) {
	a, b := s.client(t), s.client(t)
	ctx := ctxT(t, 10*time.Second)
	name := s.name(t)
	la, err := a.TryAcquire(ctx, name, nil)
	if err != nil {
		t.Fatalf("first TryAcquire: %v", err)
	}
	if _, err := b.TryAcquire(ctx, name, nil); !errors.Is(err, fencer.ErrLocked) {
		t.Fatalf("TryAcquire of a held lock = %v, want ErrLocked", err)
	}
	if _, err := a.TryAcquire(ctx, name, nil); !errors.Is(err, fencer.ErrLocked) {
		t.Fatalf("TryAcquire by the holder's own client = %v, want ErrLocked (locks are not re-entrant)", err)
	}
	release(t, la)
	lb, err := b.TryAcquire(ctx, name, nil)
	if err != nil {
		t.Fatalf("TryAcquire after release: %v", err)
	}
	if c := a.Info(); c.Tokens && lb.Token() <= la.Token() {
		t.Errorf("second grant has token %v, not above the first's %v", lb.Token(), la.Token())
	}
	release(t, lb)
}

func (s *suite) tokens(t *testing.T) {
	c := s.client(t)
	ctx := ctxT(t, 30*time.Second)
	name := s.name(t)
	var last fencer.Token
	for i := range 10 {
		l, err := c.Acquire(ctx, name, nil)
		if err != nil {
			t.Fatalf("acquire %d: %v", i, err)
		}
		switch {
		case !c.Info().Tokens && l.Token() != fencer.NoToken:
			t.Errorf("backend declares no tokens but grant %d has token %v", i, l.Token())
		case c.Info().Tokens && l.Token() <= last:
			t.Errorf("grant %d has token %v, not above the previous %v", i, l.Token(), last)
		}
		last = l.Token()
		release(t, l)
	}
}

// mutualExclusion runs several clients, each with several goroutines,
// taking turns on two locks, and checks that no two ever hold one lock at
// once and that each lock's tokens increase in the order of grants.
func (s *suite) mutualExclusion(t *testing.T) {
	const clients, perClient, rounds = 3, 3, 12
	ctx := ctxT(t, 2*time.Minute)
	names := []string{s.name(t), s.name(t)}
	type lockState struct {
		holders atomic.Int32
		mu      sync.Mutex
		tokens  []fencer.Token
	}
	states := []*lockState{{}, {}}
	var wg sync.WaitGroup
	errc := make(chan error, clients*perClient)
	for ci := range clients {
		c := s.client(t)
		for g := range perClient {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for r := range rounds {
					i := (ci + g + r) % len(names)
					l, err := c.Acquire(ctx, names[i], &fencer.Options{TTL: 20 * time.Second})
					if err != nil {
						errc <- fmt.Errorf("client %d goroutine %d round %d: %w", ci, g, r, err)
						return
					}
					st := states[i]
					if n := st.holders.Add(1); n != 1 {
						errc <- fmt.Errorf("lock %q has %d holders at once", names[i], n)
					}
					st.mu.Lock()
					st.tokens = append(st.tokens, l.Token())
					st.mu.Unlock()
					time.Sleep(time.Duration(r%3) * time.Millisecond)
					st.holders.Add(-1)
					if err := l.Release(ctx); err != nil {
						errc <- fmt.Errorf("release: %w", err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	info := s.target.New(t)
	defer info.Close()
	for i, st := range states {
		if len(st.tokens) == 0 {
			t.Fatalf("lock %d was never granted", i)
		}
		if !info.Info().Tokens {
			continue
		}
		for j := 1; j < len(st.tokens); j++ {
			if st.tokens[j] <= st.tokens[j-1] {
				t.Errorf("lock %q: grant %d has token %v after %v", names[i], j, st.tokens[j], st.tokens[j-1])
			}
		}
	}
}

// crossProcess starts several `fencer run` processes that each do a slow
// read-increment-write of a counter file under the same lock.
func (s *suite) crossProcess(t *testing.T) {
	if s.target.URL == "" {
		t.Skip("the harness has no URL for other processes")
	}
	const procs, rounds = 4, 4
	bin := testutil.FencerBinary(t)
	dir := t.TempDir()
	counter := filepath.Join(dir, "counter")
	if err := os.WriteFile(counter, []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	name := s.name(t)
	script := fmt.Sprintf(`for i in $(seq %d); do
  %q run --backend %q --lock %q --ttl 20s --wait 60s -- sh -c 'n=$(cat "$0"); sleep 0.02; echo $((n+1)) > "$0"' %q || exit 1
done`, rounds, bin, s.target.URL, name, counter)
	var ps []*testutil.Proc
	for i := range procs {
		ps = append(ps, testutil.Start(t, fmt.Sprintf("fencer-run-%d", i), exec.Command("sh", "-c", script)))
	}
	for _, p := range ps {
		if err := p.Wait(2 * time.Minute); err != nil {
			t.Fatalf("%s: %v\n%s", p.Name, err, p.LogTail(2000))
		}
	}
	b, err := os.ReadFile(counter)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(b)); got != strconv.Itoa(procs*rounds) {
		t.Fatalf("counter = %s after %d locked increments: increments were lost", got, procs*rounds)
	}
}

// expiry: a holder that stops renewing (its backend is closed, as when its
// process dies) loses the lock after the TTL, not before.
func (s *suite) expiry(t *testing.T) {
	const ttl = 500 * time.Millisecond
	ctx := ctxT(t, 30*time.Second)
	name := s.name(t)
	holder := s.target.New(t)
	sent := time.Now()
	if _, err := holder.Acquire(ctx, fencer.AcquireRequest{Name: name, TTL: ttl}); err != nil {
		t.Fatalf("acquire: %v", err)
	}
	holder.Close()
	other := s.backend(t)
	for {
		g, err := other.Acquire(ctx, fencer.AcquireRequest{Name: name, TTL: ttl})
		if err == nil {
			if got := time.Since(sent); got < ttl-fencer.Drift(ttl) {
				t.Fatalf("lock granted again %v after the holder's acquire; its TTL is %v", got, ttl)
			}
			other.Release(ctx, g)
			return
		}
		if !errors.Is(err, fencer.ErrLocked) {
			t.Fatalf("try after the holder stopped: %v", err)
		}
		if ctx.Err() != nil {
			t.Fatalf("the lock of a holder that stopped was never freed (TTL %v)", ttl)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// staleOwnerRefused: once a lease has expired and another owner holds the
// lock, the old owner's renew and release are refused and do not disturb
// the new owner (scenario 8 of DESIGN.md, the reason for a random value).
func (s *suite) staleOwnerRefused(t *testing.T) {
	const ttl = 300 * time.Millisecond
	ctx := ctxT(t, 30*time.Second)
	name := s.name(t)
	old := s.target.New(t)
	g, err := old.Acquire(ctx, fencer.AcquireRequest{Name: name, TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	// The old owner makes no more calls, so its lease expires in the store
	// (a backend keeps a granted lease alive only through Renew).
	oldView := g
	c := s.client(t)
	newLease, err := c.Acquire(ctx, name, &fencer.Options{TTL: 20 * time.Second})
	if err != nil {
		t.Fatalf("second owner never got the lock: %v", err)
	}
	defer release(t, newLease)
	if _, err := old.Renew(ctx, oldView); !errors.Is(err, fencer.ErrLeaseLost) {
		t.Errorf("renew by the old owner = %v, want ErrLeaseLost", err)
	}
	if err := old.Release(ctx, oldView); !errors.Is(err, fencer.ErrLeaseLost) {
		t.Errorf("release by the old owner = %v, want ErrLeaseLost", err)
	}
	old.Close()
	if _, err := s.client(t).TryAcquire(ctx, name, nil); !errors.Is(err, fencer.ErrLocked) {
		t.Fatalf("after the old owner's release, TryAcquire = %v; the new owner's lock must be untouched", err)
	}
	if newLease.Err() != nil {
		t.Fatalf("the new owner's lease was lost: %v", newLease.Err())
	}
}

func (s *suite) contextCancel(t *testing.T) {
	a, b := s.client(t), s.client(t)
	name := s.name(t)
	la, err := a.Acquire(ctxT(t, 10*time.Second), name, nil)
	if err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.Acquire(cancelled, name, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Acquire with a cancelled ctx = %v, want context.Canceled", err)
	}
	short, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := b.Acquire(short, name, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Acquire of a held lock until the deadline = %v, want context.DeadlineExceeded", err)
	}
	release(t, la)
	// The abandoned waits left nothing behind: the lock is free.
	lb, err := b.TryAcquire(ctxT(t, 10*time.Second), name, nil)
	if err != nil {
		t.Fatalf("TryAcquire after the holder released and the waiters gave up: %v", err)
	}
	release(t, lb)
}

// handOff: a waiter is granted the lock soon after the release, not after a
// polling interval. The bound is loose (a quarter second against an
// expected fraction of a millisecond) so that only a missing wake-up fails
// it; the median of several hand-offs is checked.
func (s *suite) handOff(t *testing.T) {
	const tries = 5
	a, b := s.client(t), s.client(t)
	ctx := ctxT(t, time.Minute)
	var waits []time.Duration
	for range tries {
		name := s.name(t)
		la, err := a.Acquire(ctx, name, nil)
		if err != nil {
			t.Fatal(err)
		}
		type granted struct {
			at  time.Time
			err error
		}
		got := make(chan granted, 1)
		go func() {
			lb, err := b.Acquire(ctx, name, nil)
			at := time.Now()
			if err == nil {
				err = lb.Release(ctx)
			}
			got <- granted{at, err}
		}()
		time.Sleep(100 * time.Millisecond) // let the waiter start waiting
		released := time.Now()
		release(t, la)
		g := <-got
		if g.err != nil {
			t.Fatalf("waiter: %v", g.err)
		}
		waits = append(waits, g.at.Sub(released))
	}
	slices.Sort(waits)
	if median := waits[tries/2]; median > 250*time.Millisecond {
		t.Errorf("median hand-off %v (all: %v): waiters are not woken by the release", median, waits)
	}
}

// lossOnValidity: with renewal off, Done fires when the conservative
// validity runs out, which is before the store's TTL could.
func (s *suite) lossOnValidity(t *testing.T) {
	const ttl = 300 * time.Millisecond
	c := s.client(t)
	ctx := ctxT(t, 10*time.Second)
	l, err := c.Acquire(ctx, s.name(t), &fencer.Options{TTL: ttl, NoRenew: true})
	returned := time.Now()
	if err != nil {
		t.Fatal(err)
	}
	vu := l.ValidUntil()
	if latest := returned.Add(ttl - fencer.Drift(ttl)); !vu.Before(latest) {
		t.Errorf("ValidUntil is %v after Acquire returned; it must be before TTL − drift (%v)", vu.Sub(returned), ttl-fencer.Drift(ttl))
	}
	select {
	case <-l.Done():
	case <-ctx.Done():
		t.Fatal("Done never fired for a lease that is not renewed")
	}
	if time.Now().Before(vu) {
		t.Errorf("Done fired %v before ValidUntil", vu.Sub(time.Now()))
	}
	if !errors.Is(l.Err(), fencer.ErrLeaseLost) {
		t.Errorf("Err() = %v, want ErrLeaseLost", l.Err())
	}
	if !errors.Is(context.Cause(l.Context()), fencer.ErrLeaseLost) {
		t.Errorf("context cause = %v, want ErrLeaseLost", context.Cause(l.Context()))
	}
	l.Release(ctx)
}

func (s *suite) lossOnDelete(t *testing.T) {
	if s.target.Delete == nil {
		t.Skip("the harness cannot delete a lock behind its holder's back")
	}
	c := s.client(t)
	ctx := ctxT(t, 20*time.Second)
	name := s.name(t)
	l, err := c.Acquire(ctx, name, &fencer.Options{TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	s.target.Delete(t, name)
	select {
	case <-l.Done():
	case <-ctx.Done():
		t.Fatal("Done never fired after the lock was deleted behind the holder's back")
	}
	if !errors.Is(l.Err(), fencer.ErrLeaseLost) {
		t.Errorf("Err() = %v, want ErrLeaseLost", l.Err())
	}
	l.Release(ctx)
}

func (s *suite) lossOnOutage(t *testing.T) {
	const ttl = time.Second
	c := s.client(t)
	ctx := ctxT(t, 20*time.Second)
	l, err := c.Acquire(ctx, s.name(t), &fencer.Options{TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	s.target.Outage(t)
	// Any renewal that succeeded was sent before the outage was complete.
	start := time.Now()
	select {
	case <-l.Done():
	case <-ctx.Done():
		t.Fatal("Done never fired after the store went away")
	}
	if !errors.Is(l.Err(), fencer.ErrLeaseLost) {
		t.Errorf("Err() = %v, want ErrLeaseLost", l.Err())
	}
	// Done fires at ValidUntil (plus scheduling); ValidUntil itself must
	// lie before the store could expire the lease, which is no earlier than
	// the last renewal sent before the outage plus the TTL.
	if vu := l.ValidUntil(); !vu.Before(start.Add(ttl - fencer.Drift(ttl))) {
		t.Errorf("the lease was valid until %v after the store went away; with a TTL of %v the holder learns too late", vu.Sub(start), ttl)
	}
	rctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	l.Release(rctx)
}

func (s *suite) releaseTwice(t *testing.T) {
	c := s.client(t)
	ctx := ctxT(t, 10*time.Second)
	l, err := c.Acquire(ctx, s.name(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	release(t, l)
	if err := l.Release(ctx); err != nil {
		t.Errorf("second Release = %v, want nil", err)
	}
	if !errors.Is(l.Err(), fencer.ErrReleased) {
		t.Errorf("Err() after Release = %v, want ErrReleased", l.Err())
	}
}
