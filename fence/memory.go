package fence

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/fencerlock/fencer"
)

// MemoryStore is a FloorStore in memory: fast, and forgotten when the
// process exits. Use it where the storage itself is in memory (a restart
// loses the data the floors protect too), and in tests. It keeps one entry
// per resource ever raised, forever.
//
// A MemoryStore is safe for concurrent use; raises of one resource are a
// compare-and-swap loop, raises of different resources share nothing. It
// needs no cleanup.
type MemoryStore struct {
	floors sync.Map // resource string → *atomic.Uint64
}

var _ FloorStore = (*MemoryStore)(nil)

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore { return &MemoryStore{} }

func (s *MemoryStore) floor(resource string) *atomic.Uint64 {
	if v, ok := s.floors.Load(resource); ok {
		return v.(*atomic.Uint64)
	}
	v, _ := s.floors.LoadOrStore(resource, new(atomic.Uint64))
	return v.(*atomic.Uint64)
}

// Load returns the floor of resource, or 0. It never fails.
func (s *MemoryStore) Load(_ context.Context, resource string) (fencer.Token, error) {
	if v, ok := s.floors.Load(resource); ok {
		return fencer.Token(v.(*atomic.Uint64).Load()), nil
	}
	return 0, nil
}

// Raise implements FloorStore. It never fails.
func (s *MemoryStore) Raise(_ context.Context, resource string, token fencer.Token) (fencer.Token, bool, error) {
	f := s.floor(resource)
	for {
		cur := f.Load()
		switch {
		case uint64(token) < cur:
			return fencer.Token(cur), false, nil
		case uint64(token) == cur, f.CompareAndSwap(cur, uint64(token)):
			return token, true, nil
		}
	}
}
