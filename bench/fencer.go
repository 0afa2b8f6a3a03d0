package bench

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/backends"
)

// FencerLocker is a Locker over a fencer.Client: Acquire is
// Client.Acquire with the given options, and Release is Lease.Release. It
// is safe for concurrent use, as the Client is.
type FencerLocker struct {
	c        *fencer.Client
	opts     *fencer.Options
	renewals *atomic.Int64 // nil: not counted
}

var (
	_ Locker         = (*FencerLocker)(nil)
	_ RenewalCounter = (*FencerLocker)(nil)
)

// NewFencerLocker returns a Locker over c. opts go to every Acquire; nil
// means the defaults (a 15 s lease, renewed automatically). The caller
// keeps c and closes it.
func NewFencerLocker(c *fencer.Client, opts *fencer.Options) *FencerLocker {
	return &FencerLocker{c: c, opts: opts}
}

// Acquire blocks until the lock is granted or ctx is done.
func (l *FencerLocker) Acquire(ctx context.Context, name string) (Held, error) {
	lease, err := l.c.Acquire(ctx, name, l.opts)
	if err != nil {
		return nil, err
	}
	return fencerHeld{lease}, nil
}

// Renewals returns the successful renewals of this Locker's backend, or 0
// when it was not made by OpenFencer.
func (l *FencerLocker) Renewals() int64 {
	if l.renewals == nil {
		return 0
	}
	return l.renewals.Load()
}

type fencerHeld struct{ l *fencer.Lease }

func (h fencerHeld) Release(ctx context.Context) error { return h.l.Release(ctx) }

// FencerSet is the Lockers OpenFencer made and the Clients behind them.
// Close it when done.
type FencerSet struct {
	// Lockers holds one Locker per benchmark client (the same one n times
	// when shared).
	Lockers []Locker
	// Info describes the backend.
	Info fencer.BackendInfo

	clients []*fencer.Client
}

// OpenFencer opens n Lockers on the backend at url (any URL backends.Open
// takes). Each is its own fencer.Client over its own Backend, with its own
// connections, as n separate processes would be; with shared, one Client
// over one Backend serves all n, as one process with n goroutines would.
// opts go to every Acquire. Each Backend's successful renewals are counted
// (see RenewalCounter).
//
// Errors about the URL are *fencer.InvalidError; Open does not connect, so
// an unreachable backend shows up in the first Acquire.
func OpenFencer(ctx context.Context, url string, n int, shared bool, opts *fencer.Options) (*FencerSet, error) {
	if n < 1 || n > MaxClients {
		return nil, fmt.Errorf("bench: %d clients; accepted: 1 to %d", n, MaxClients)
	}
	s := &FencerSet{}
	var one *FencerLocker
	for i := range n {
		if shared && one != nil {
			s.Lockers = append(s.Lockers, one)
			continue
		}
		b, err := backends.Open(ctx, url)
		if err != nil {
			return nil, errors.Join(err, s.Close())
		}
		cb := &countingBackend{Backend: b}
		c := fencer.New(cb, nil)
		if i == 0 {
			s.Info = c.Info()
		}
		s.clients = append(s.clients, c)
		l := NewFencerLocker(c, opts)
		l.renewals = &cb.renewals
		one = l
		s.Lockers = append(s.Lockers, l)
	}
	return s, nil
}

// Close closes every Client (releasing leases still held) and so every
// Backend.
func (s *FencerSet) Close() error {
	var errs []error
	for _, c := range s.clients {
		errs = append(errs, c.Close())
	}
	s.clients = nil
	return errors.Join(errs...)
}

// countingBackend counts a Backend's successful renewals.
type countingBackend struct {
	fencer.Backend
	renewals atomic.Int64
}

func (b *countingBackend) Renew(ctx context.Context, g fencer.Grant) (fencer.Grant, error) {
	g, err := b.Backend.Renew(ctx, g)
	if err == nil {
		b.renewals.Add(1)
	}
	return g, err
}
