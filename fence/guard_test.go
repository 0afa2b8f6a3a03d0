package fence_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/fence"
	"github.com/fencerlock/fencer/fence/fencetest"
)

// stores are the FloorStores of this package, opened fresh for a test.
var stores = []struct {
	name string
	open func(t testing.TB) fence.FloorStore
}{
	{"memory", func(testing.TB) fence.FloorStore { return fence.NewMemoryStore() }},
	{"file", func(t testing.TB) fence.FloorStore { return openFile(t, filepath.Join(t.TempDir(), "floors"), nil) }},
}

func openFile(t testing.TB, path string, opts *fence.FileOptions) *fence.FileStore {
	t.Helper()
	s, err := fence.OpenFileStore(path, opts)
	if err != nil {
		t.Fatalf("OpenFileStore: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			fencetest.TestFloorStore(t, func(t *testing.T) fence.FloorStore { return st.open(t) })
		})
	}
}

func TestGuardCheck(t *testing.T) {
	type step struct {
		resource string
		token    fencer.Token
		want     string // "" (accepted), "stale: <message part>" or "invalid"
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"33 after 34 is refused", []step{
			{"x", 33, ""},
			{"x", 34, ""},
			{"x", 33, `stale: token 33 is stale: resource "x" has seen token 34`},
		}},
		{"equal is accepted", []step{{"x", 34, ""}, {"x", 34, ""}, {"x", 34, ""}}},
		{"higher is accepted", []step{{"x", 1, ""}, {"x", 2, ""}, {"x", 1000, ""}}},
		{"resources are independent", []step{{"a", 34, ""}, {"b", 33, ""}, {"a", 33, "stale: has seen token 34"}}},
		{"token 0 is invalid", []step{{"x", 0, "invalid"}}},
		{"empty resource is invalid", []step{{"", 1, "invalid"}}},
		{"NUL in resource is invalid", []step{{"a\x00b", 1, "invalid"}}},
		{"non-UTF-8 resource is invalid", []step{{"\xff", 1, "invalid"}}},
		{"overlong resource is invalid", []step{{strings.Repeat("r", fence.MaxResourceLen+1), 1, "invalid"}}},
		{"longest resource is fine", []step{{strings.Repeat("r", fence.MaxResourceLen), 1, ""}}},
	}
	for _, st := range stores {
		for _, tt := range tests {
			t.Run(st.name+"/"+tt.name, func(t *testing.T) {
				g := fence.NewGuard(st.open(t))
				for i, s := range tt.steps {
					err := g.Check(context.Background(), s.resource, s.token)
					switch {
					case s.want == "":
						if err != nil {
							t.Fatalf("step %d: Check(%.20q, %d): %v, want nil", i, s.resource, s.token, err)
						}
					case s.want == "invalid":
						if !errors.Is(err, fencer.ErrInvalid) || !strings.Contains(err.Error(), "accepted") {
							t.Fatalf("step %d: Check(%.20q, %d): %v, want an InvalidError saying what is accepted", i, s.resource, s.token, err)
						}
					default:
						var se *fence.StaleError
						if !errors.Is(err, fence.ErrStale) || !errors.As(err, &se) {
							t.Fatalf("step %d: Check(%q, %d): %v, want a *StaleError", i, s.resource, s.token, err)
						}
						if se.Token != s.token || se.Resource != s.resource {
							t.Errorf("StaleError %+v does not name the request", se)
						}
						if part := strings.TrimPrefix(s.want, "stale: "); !strings.Contains(err.Error(), part) {
							t.Errorf("message %q does not contain %q", err, part)
						}
					}
				}
			})
		}
	}
}

// TestReadsRaiseTheFloor is the lost update that tokens on writes alone do
// not prevent: holder 34 reads, a write from the paused holder 33 lands,
// holder 34 writes what it computed from its read. Because the read
// carried 34 and raised the floor, 33's write is refused.
func TestReadsRaiseTheFloor(t *testing.T) {
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			svc := newCounterService(fence.NewGuard(st.open(t)))
			ctx := context.Background()
			if err := svc.write(ctx, 33, 10); err != nil { // holder 33 writes, then pauses
				t.Fatal(err)
			}
			v, err := svc.read(ctx, 34) // 33's lease expired; 34 reads to increment
			if err != nil {
				t.Fatal(err)
			}
			err = svc.write(ctx, 33, 500) // 33 wakes up and writes
			if !errors.Is(err, fence.ErrStale) {
				t.Fatalf("the stale write after 34's read: %v, want ErrStale (accepted, 34's write would overwrite it: a lost update)", err)
			}
			if err := svc.write(ctx, 34, v+1); err != nil {
				t.Fatal(err)
			}
			if got, _ := svc.read(ctx, 34); got != 11 {
				t.Fatalf("counter = %d, want 11", got)
			}
		})
	}
}

// counterService is a minimal fenced storage service: one integer, each
// request checked by the guard, check and access atomic under its lock.
type counterService struct {
	g  *fence.Guard
	mu sync.Mutex
	v  int
}

func newCounterService(g *fence.Guard) *counterService { return &counterService{g: g} }

func (s *counterService) read(ctx context.Context, tok fencer.Token) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.g.Check(ctx, "counter", tok); err != nil {
		return 0, err
	}
	return s.v, nil
}

func (s *counterService) write(ctx context.Context, tok fencer.Token, v int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.g.Check(ctx, "counter", tok); err != nil {
		return err
	}
	s.v = v
	return nil
}

// TestGuardStress has many goroutines acquire "locks" (draw increasing
// tokens), then act with them after random delays, on a few resources. A
// fenced service must apply, per resource, a non-decreasing sequence of
// tokens: once a token is accepted, nothing lower ever is.
func TestGuardStress(t *testing.T) {
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			g := fence.NewGuard(st.open(t))
			const resources, workers, ops = 4, 12, 150
			var next [resources]atomic.Uint64 // the lock service's token counters
			var mu [resources]sync.Mutex
			var applied [resources][]fencer.Token
			var wg sync.WaitGroup
			for w := range workers {
				rng := rand.New(rand.NewPCG(uint64(w), 7))
				wg.Go(func() {
					for range ops {
						r := rng.IntN(resources)
						tok := fencer.Token(next[r].Add(1))
						if rng.IntN(3) == 0 { // a paused holder, acting late
							tok -= fencer.Token(rng.IntN(5))
							tok = max(tok, 1)
						}
						mu[r].Lock()
						err := g.Check(context.Background(), fmt.Sprint("res", r), tok)
						if err == nil {
							applied[r] = append(applied[r], tok)
						}
						mu[r].Unlock()
						if err != nil && !errors.Is(err, fence.ErrStale) {
							t.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			total := 0
			for r, toks := range applied {
				total += len(toks)
				for i := 1; i < len(toks); i++ {
					if toks[i] < toks[i-1] {
						t.Fatalf("resource %d: token %d applied after %d", r, toks[i], toks[i-1])
					}
				}
			}
			if total == 0 {
				t.Fatal("nothing was accepted")
			}
		})
	}
}

func TestGuardFloor(t *testing.T) {
	g := fence.NewGuard(nil)
	ctx := context.Background()
	if f, err := g.Floor(ctx, "x"); err != nil || f != 0 {
		t.Fatalf("Floor of a new resource = %d, %v", f, err)
	}
	if err := g.Check(ctx, "x", 7); err != nil {
		t.Fatal(err)
	}
	if f, err := g.Floor(ctx, "x"); err != nil || f != 7 {
		t.Fatalf("Floor = %d, %v; want 7", f, err)
	}
	if _, err := g.Floor(ctx, ""); !errors.Is(err, fencer.ErrInvalid) {
		t.Fatalf("Floor of an empty resource: %v, want ErrInvalid", err)
	}
}

// failingStore fails every call, to test how failures are reported.
type failingStore struct{}

var errDisk = errors.New("disk on fire")

func (failingStore) Load(context.Context, string) (fencer.Token, error) { return 0, errDisk }
func (failingStore) Raise(context.Context, string, fencer.Token) (fencer.Token, bool, error) {
	return 0, false, errDisk
}

func TestGuardStoreFailure(t *testing.T) {
	g := fence.NewGuard(failingStore{})
	err := g.Check(context.Background(), "x", 3)
	if !errors.Is(err, errDisk) || errors.Is(err, fence.ErrStale) || !strings.Contains(err.Error(), `"x"`) {
		t.Fatalf("Check with a failing store: %v", err)
	}
}

func BenchmarkGuardCheck(b *testing.B) {
	for _, st := range stores {
		// raise: every check raises the floor (a new token each time), so
		// the file store appends and syncs; same: a holder's further
		// requests, no write at all.
		for _, mode := range []string{"raise", "same"} {
			b.Run(st.name+"/"+mode, func(b *testing.B) {
				s := st.open(b)
				g := fence.NewGuard(s)
				var ids atomic.Int64
				b.SetParallelism(8) // 8×GOMAXPROCS requests in flight, to let group commit work
				b.RunParallel(func(pb *testing.PB) {
					r := fmt.Sprint("res", ids.Add(1))
					tok := fencer.Token(1)
					for pb.Next() {
						if mode == "raise" {
							tok++
						}
						if err := g.Check(context.Background(), r, tok); err != nil {
							b.Error(err)
							return
						}
					}
				})
				if fs, ok := s.(*fence.FileStore); ok && mode == "raise" {
					st := fs.Stats()
					b.ReportMetric(float64(st.Records)/float64(max(st.Syncs, 1)), "raises/fsync")
				}
			})
		}
	}
}
