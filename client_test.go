package fencer

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

func TestValidation(t *testing.T) {
	for _, tc := range []struct {
		name, lock string
		opts       *Options
		want       string
	}{
		{"empty name", "", nil, "it is empty"},
		{"long name", strings.Repeat("a", 257), nil, "257 bytes"},
		{"bad utf8", "a\xc3", nil, "not valid UTF-8"},
		{"control", "a\x00b", nil, "control character at byte 1"},
		{"del char", "a\x7f", nil, "control character"},
		{"short ttl", "a", &Options{TTL: 9 * time.Millisecond}, "10ms to 24h"},
		{"long ttl", "a", &Options{TTL: 24*time.Hour + 1}, "10ms to 24h"},
		{"negative lock delay", "a", &Options{LockDelay: -1}, "lock delay"},
		{"unknown guarantee", "a", &Options{Require: 7}, "required guarantee"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			c := New(f, nil)
			_, err := c.TryAcquire(context.Background(), tc.lock, tc.opts)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrInvalid mentioning %q", err, tc.want)
			}
			if len(f.held) != 0 {
				t.Fatal("an invalid request reached the backend")
			}
		})
	}
	for _, ok := range []string{"a", "ünïcode/lock", strings.Repeat("a", 256), "with space"} {
		if err := ValidateName(ok); err != nil {
			t.Errorf("ValidateName(%q) = %v", ok, err)
		}
	}
}

func TestLockDelayNeedsSupport(t *testing.T) {
	f := newFake()
	c := New(f, nil)
	_, err := c.TryAcquire(context.Background(), "a", &Options{LockDelay: time.Second})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "no lock-delay") {
		t.Fatalf("lock delay on a backend without it: %v", err)
	}
}

func TestRequireCorrectness(t *testing.T) {
	f := newFake()
	f.info.Guarantee = Efficiency
	c := New(f, nil)
	_, err := c.TryAcquire(context.Background(), "a", &Options{Require: Correctness})
	if !errors.Is(err, ErrGuarantee) || !strings.Contains(err.Error(), "fake backend gives efficiency") {
		t.Fatalf("got %v, want ErrGuarantee naming the backend and its guarantee", err)
	}
	l, err := c.TryAcquire(context.Background(), "a", &Options{Require: Efficiency})
	if err != nil {
		t.Fatal(err)
	}
	if l.SafeToken() {
		t.Error("an efficiency backend's lease claims a safe token")
	}
}

func TestParseToken(t *testing.T) {
	for _, s := range []string{"", "0", "-1", "+1", "01", "1.5", "x", "18446744073709551616", " 1"} {
		if _, err := ParseToken(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseToken(%q) = %v, want ErrInvalid", s, err)
		}
	}
	for _, want := range []Token{1, 33, 18446744073709551615} {
		got, err := ParseToken(want.String())
		if err != nil || got != want {
			t.Errorf("ParseToken(%q) = %v, %v", want.String(), got, err)
		}
	}
}

// TestRenewalKeepsLease: with renewals succeeding, the lease outlives many
// TTLs, renewing about every TTL/3.
func TestRenewalKeepsLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		c := New(f, nil)
		defer c.Close()
		l, err := c.Acquire(context.Background(), "a", &Options{TTL: 3 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if err := l.Err(); err != nil {
			t.Fatalf("lease lost while renewals succeed: %v", err)
		}
		renews, _ := f.counts()
		if renews < 25 || renews > 31 {
			t.Errorf("%d renewals in 10 TTLs; want about 30 (every TTL/3)", renews)
		}
		if err := l.Release(context.Background()); err != nil {
			t.Fatal(err)
		}
		if !errors.Is(l.Err(), ErrReleased) {
			t.Errorf("Err after release = %v", l.Err())
		}
	})
}

// TestLossWhenRenewalsFail: when renewals fail, Done fires at the
// conservative validity (send + TTL − drift − margin), before the TTL.
func TestLossWhenRenewalsFail(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		f.renewErr = errors.New("connection refused")
		c := New(f, nil)
		defer c.Close()
		const ttl = 10 * time.Second
		start := time.Now()
		l, err := c.Acquire(context.Background(), "a", &Options{TTL: ttl})
		if err != nil {
			t.Fatal(err)
		}
		<-l.Done()
		lostAfter := time.Since(start)
		want := ttl - Drift(ttl) - safetyMargin(ttl)
		if lostAfter != want {
			t.Errorf("lost after %v, want %v (TTL − drift − margin)", lostAfter, want)
		}
		if !errors.Is(l.Err(), ErrLeaseLost) || !strings.Contains(l.Err().Error(), "no successful renewal") {
			t.Errorf("Err = %v", l.Err())
		}
		renews, _ := f.counts()
		if renews < 5 {
			t.Errorf("only %d renewal attempts before giving up; it should keep retrying", renews)
		}
	})
}

// TestRenewalRecovers: a renewal that fails for a while and then succeeds
// before the validity runs out keeps the lease.
func TestRenewalRecovers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		f.renewErr = errors.New("timeout")
		c := New(f, nil)
		defer c.Close()
		l, err := c.Acquire(context.Background(), "a", &Options{TTL: 3 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second)
		f.set(func(f *fakeBackend) { f.renewErr = nil })
		time.Sleep(10 * time.Second)
		if err := l.Err(); err != nil {
			t.Fatalf("lease lost although a renewal succeeded in time: %v", err)
		}
	})
}

// TestLossWhenNotOwner: a renewal that the store refuses loses the lease at
// once.
func TestLossWhenNotOwner(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		c := New(f, nil)
		defer c.Close()
		l, err := c.Acquire(context.Background(), "a", &Options{TTL: 3 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		f.set(func(f *fakeBackend) { delete(f.held, "a") })
		start := time.Now()
		<-l.Done()
		if took := time.Since(start); took > time.Second {
			t.Errorf("loss noticed after %v; the next renewal is due within TTL/3", took)
		}
		if !errors.Is(l.Err(), ErrLeaseLost) {
			t.Errorf("Err = %v", l.Err())
		}
		if err := l.Release(context.Background()); !errors.Is(err, ErrLeaseLost) {
			t.Errorf("Release of a lost lease = %v, want ErrLeaseLost", err)
		}
	})
}

// TestLostChannel: a backend's loss notice ends the lease without waiting
// for a renewal.
func TestLostChannel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		lost := make(chan struct{})
		f.lost = lost
		c := New(f, nil)
		defer c.Close()
		l, err := c.Acquire(context.Background(), "a", &Options{TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		close(lost)
		synctest.Wait()
		if !errors.Is(l.Err(), ErrLeaseLost) || !strings.Contains(l.Err().Error(), "reported the lease gone") {
			t.Fatalf("Err = %v", l.Err())
		}
	})
}

// TestNoRenew: without renewal the lease ends at its validity and the store
// sees no renewals.
func TestNoRenew(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		c := New(f, nil)
		defer c.Close()
		l, err := c.Acquire(context.Background(), "a", &Options{TTL: time.Second, NoRenew: true})
		if err != nil {
			t.Fatal(err)
		}
		<-l.Done()
		if renews, _ := f.counts(); renews != 0 {
			t.Errorf("%d renewals with NoRenew", renews)
		}
	})
}

// TestLateGrantRetried: a grant whose reply arrives after its validity is
// given back; a try reports it, a blocking acquire tries again.
func TestLateGrantRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		f.delay = time.Second
		c := New(f, nil)
		defer c.Close()
		_, err := c.TryAcquire(context.Background(), "a", &Options{TTL: 500 * time.Millisecond})
		if err == nil || !strings.Contains(err.Error(), "past the 500ms lease's validity") {
			t.Fatalf("late try: %v", err)
		}
		if _, releases := f.counts(); releases != 1 {
			t.Errorf("the late grant was not given back (%d releases)", releases)
		}
		attempts := 0
		f.acquireFn = func(AcquireRequest) {
			attempts++
			if attempts == 3 {
				f.delay = 0
			}
		}
		l, err := c.Acquire(context.Background(), "a", &Options{TTL: 500 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if attempts != 3 {
			t.Errorf("%d attempts, want 3", attempts)
		}
		l.Release(context.Background())
	})
}

// TestCloseReleases: Close gives back held leases and closes the backend.
func TestCloseReleases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		c := New(f, nil)
		l, err := c.Acquire(context.Background(), "a", nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if !errors.Is(l.Err(), ErrReleased) || len(f.held) != 0 || !f.closed {
			t.Fatalf("after Close: lease err %v, held %v, backend closed %v", l.Err(), f.held, f.closed)
		}
		if _, err := c.Acquire(context.Background(), "a", nil); !errors.Is(err, ErrClosed) {
			t.Fatalf("Acquire after Close = %v", err)
		}
	})
}

// TestLeaseContextKeepsValues: the lease context carries the acquiring
// context's values but outlives its cancellation.
func TestLeaseContextKeepsValues(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		type key struct{}
		c := New(newFake(), nil)
		defer c.Close()
		ctx, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "v"))
		l, err := c.Acquire(ctx, "a", nil)
		if err != nil {
			t.Fatal(err)
		}
		cancel()
		synctest.Wait()
		if l.Context().Value(key{}) != "v" || l.Err() != nil {
			t.Fatalf("value %v, err %v", l.Context().Value(key{}), l.Err())
		}
	})
}

// TestCloseEndsWaitingAcquire: Close makes a waiting Acquire return
// ErrClosed before it closes the backend, as the Backend contract promises.
func TestCloseEndsWaitingAcquire(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		c := New(f, nil)
		holder, err := c.Acquire(context.Background(), "a", nil)
		if err != nil {
			t.Fatal(err)
		}
		errc := make(chan error, 1)
		go func() {
			_, err := c.Acquire(context.Background(), "a", nil)
			errc <- err
		}()
		synctest.Wait()
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if err := <-errc; !errors.Is(err, ErrClosed) {
			t.Fatalf("waiting Acquire after Close = %v, want ErrClosed", err)
		}
		if !errors.Is(holder.Err(), ErrReleased) || !f.closed {
			t.Fatalf("holder %v, backend closed %v", holder.Err(), f.closed)
		}
	})
}
