package fencetest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/fence"
)

// TestFloorStore runs the conformance suite against the stores open
// returns. It calls open once per subtest; open may return a fresh store
// or the same one each time (the subtests use resource names of their
// own), and must register any cleanup with t.Cleanup.
func TestFloorStore(t *testing.T, open func(t *testing.T) fence.FloorStore) {
	t.Run("Sequence", func(t *testing.T) { testSequence(t, open(t)) })
	t.Run("Independent", func(t *testing.T) { testIndependent(t, open(t)) })
	t.Run("LargeToken", func(t *testing.T) { testLargeToken(t, open(t)) })
	t.Run("ConcurrentOneResource", func(t *testing.T) { testConcurrent(t, open(t), 1) })
	t.Run("ConcurrentManyResources", func(t *testing.T) { testConcurrent(t, open(t), 16) })
}

func resource(t *testing.T, suffix string) string { return t.Name() + "/" + suffix }

func raise(t *testing.T, s fence.FloorStore, r string, token fencer.Token) (fencer.Token, bool) {
	t.Helper()
	floor, ok, err := s.Raise(context.Background(), r, token)
	if err != nil {
		t.Fatalf("Raise(%q, %d): %v", r, token, err)
	}
	return floor, ok
}

func load(t *testing.T, s fence.FloorStore, r string) fencer.Token {
	t.Helper()
	f, err := s.Load(context.Background(), r)
	if err != nil {
		t.Fatalf("Load(%q): %v", r, err)
	}
	return f
}

// testSequence walks one resource through the 33/34 story.
func testSequence(t *testing.T, s fence.FloorStore) {
	r := resource(t, "x")
	if f := load(t, s, r); f != 0 {
		t.Fatalf("Load of a new resource = %d, want 0", f)
	}
	steps := []struct {
		token     fencer.Token
		wantFloor fencer.Token
		wantOK    bool
	}{
		{33, 33, true},  // first holder
		{33, 33, true},  // its further requests
		{34, 34, true},  // a newer holder
		{33, 34, false}, // the paused first holder wakes up
		{34, 34, true},
		{1, 34, false},
		{100, 100, true}, // tokens may skip
		{99, 100, false},
	}
	for _, st := range steps {
		floor, ok := raise(t, s, r, st.token)
		if floor != st.wantFloor || ok != st.wantOK {
			t.Fatalf("Raise(%d) = %d, %v; want %d, %v", st.token, floor, ok, st.wantFloor, st.wantOK)
		}
		if f := load(t, s, r); f != st.wantFloor {
			t.Fatalf("after Raise(%d): Load = %d, want %d", st.token, f, st.wantFloor)
		}
	}
}

func testIndependent(t *testing.T, s fence.FloorStore) {
	a, b := resource(t, "a"), resource(t, "b")
	raise(t, s, a, 50)
	if floor, ok := raise(t, s, b, 10); !ok || floor != 10 {
		t.Fatalf("Raise(b, 10) after Raise(a, 50) = %d, %v; want 10, true", floor, ok)
	}
	if f := load(t, s, a); f != 50 {
		t.Fatalf("Load(a) = %d, want 50", f)
	}
}

// testLargeToken checks tokens near the top of the range: a store either
// keeps them or refuses them with a *fencer.InvalidError, never wraps.
func testLargeToken(t *testing.T, s fence.FloorStore) {
	for _, tok := range []fencer.Token{math.MaxInt64, math.MaxInt64 + 1, math.MaxUint64} {
		r := resource(t, fmt.Sprint(tok))
		floor, ok, err := s.Raise(context.Background(), r, tok)
		if err != nil {
			if !errors.Is(err, fencer.ErrInvalid) {
				t.Fatalf("Raise(%d): %v; a store that cannot keep a token must refuse it with a *fencer.InvalidError", tok, err)
			}
			continue
		}
		if !ok || floor != tok {
			t.Fatalf("Raise(%d) = %d, %v; want %d, true", tok, floor, ok, tok)
		}
		if f := load(t, s, r); f != tok {
			t.Fatalf("Load after Raise(%d) = %d", tok, f)
		}
		if floor, ok := raise(t, s, r, 5); ok || floor != tok {
			t.Fatalf("Raise(5) after Raise(%d) = %d, %v; want %d, false", tok, floor, ok, tok)
		}
	}
}

// testConcurrent raises tokens in random order from many goroutines and
// checks every answer against what must hold whatever the interleaving:
// an accepted token was the floor at that moment, a refused one was below
// it, floors never go back, and the final floor is the highest token.
func testConcurrent(t *testing.T, s fence.FloorStore, resources int) {
	const workers, perWorker = 8, 40
	ctx := context.Background()
	var wg sync.WaitGroup
	var mu sync.Mutex
	maxTok := make(map[string]fencer.Token)
	for w := range workers {
		rng := rand.New(rand.NewPCG(uint64(w), 42))
		wg.Go(func() {
			seen := make(map[string]fencer.Token) // floors this worker observed
			for range perWorker {
				r := resource(t, fmt.Sprint(rng.IntN(resources)))
				tok := fencer.Token(1 + rng.IntN(1000))
				mu.Lock()
				maxTok[r] = max(maxTok[r], tok)
				mu.Unlock()
				floor, ok, err := s.Raise(ctx, r, tok)
				switch {
				case err != nil:
					t.Errorf("Raise(%q, %d): %v", r, tok, err)
					return
				case ok && floor != tok:
					t.Errorf("Raise(%q, %d) accepted with floor %d; an accepted token becomes the floor", r, tok, floor)
				case !ok && floor <= tok:
					t.Errorf("Raise(%q, %d) refused with floor %d; only a lower token is refused", r, tok, floor)
				case floor < seen[r]:
					t.Errorf("resource %q: floor went back from %d to %d", r, seen[r], floor)
				}
				seen[r] = floor
			}
		})
	}
	wg.Wait()
	for r, m := range maxTok {
		if f := load(t, s, r); f != m {
			t.Errorf("resource %q: final floor %d, want the highest token raised, %d", r, f, m)
		}
	}
}
