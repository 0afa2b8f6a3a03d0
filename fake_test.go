package fencer

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// fakeBackend is an in-memory Backend for unit tests of the Client's policy
// (validation, renewal, the validity view). It is not a backend test: every
// real backend runs package locktest against a real store.
type fakeBackend struct {
	info BackendInfo

	mu        sync.Mutex
	held      map[string]int // name -> grant id
	next      int
	token     Token
	renewErr  error         // returned by Renew when set
	renews    int           // successful and failed Renew calls
	releases  int           // Release calls
	delay     time.Duration // added before Acquire returns
	lost      chan struct{} // handed out as Grant.Lost when not nil
	closed    bool
	acquireFn func(AcquireRequest) // called on each Acquire
}

func newFake() *fakeBackend {
	return &fakeBackend{info: BackendInfo{Kind: "fake", Guarantee: Correctness, Tokens: true}, held: map[string]int{}}
}

func (f *fakeBackend) Info() BackendInfo { return f.info }

func (f *fakeBackend) Acquire(ctx context.Context, req AcquireRequest) (Grant, error) {
	sent := time.Now()
	if f.acquireFn != nil {
		f.acquireFn(req)
	}
	if f.delay > 0 {
		time.Sleep(f.delay)
	}
	for {
		f.mu.Lock()
		if _, ok := f.held[req.Name]; !ok {
			f.next++
			f.token++
			f.held[req.Name] = f.next
			g := Grant{Name: req.Name, Token: f.token, TTL: req.TTL, Sent: sent, Handle: f.next, Lost: f.lost}
			f.mu.Unlock()
			return g, nil
		}
		f.mu.Unlock()
		if !req.Wait {
			return Grant{}, ErrLocked
		}
		select {
		case <-ctx.Done():
			return Grant{}, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

func (f *fakeBackend) Renew(ctx context.Context, g Grant) (Grant, error) {
	sent := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.renews++
	if f.renewErr != nil {
		return Grant{}, f.renewErr
	}
	if f.held[g.Name] != g.Handle {
		return Grant{}, fmt.Errorf("%w: not the owner", ErrLeaseLost)
	}
	g.Sent = sent
	return g, nil
}

func (f *fakeBackend) Release(ctx context.Context, g Grant) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.releases++
	if f.held[g.Name] != g.Handle {
		return fmt.Errorf("%w: not the owner", ErrLeaseLost)
	}
	delete(f.held, g.Name)
	return nil
}

func (f *fakeBackend) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

func (f *fakeBackend) set(fn func(f *fakeBackend)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeBackend) counts() (renews, releases int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.renews, f.releases
}
