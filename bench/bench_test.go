package bench_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/bench"
	"github.com/fencerlock/fencer/internal/testutil/redistest"
	"github.com/fencerlock/fencer/server"
)

// TestMain fails the package's tests if any goroutine outlives them: Run's
// clients and clock, and every backend's goroutines, must all be stopped.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startServer starts a one-node fencer server in-process on loopback and
// returns its fencer:// URL.
func startServer(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := server.Start(ctx, server.Config{
		NodeID:           "n1",
		DataDir:          t.TempDir(),
		ListenAddr:       "127.0.0.1:0",
		RaftAddr:         "127.0.0.1:0",
		Bootstrap:        true,
		HeartbeatTimeout: 300 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("start server: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	deadline := time.Now().Add(30 * time.Second)
	for !s.IsLeader() {
		if time.Now().After(deadline) {
			t.Fatal("the one-node server did not lead within 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return "fencer://" + s.Addr()
}

// backendURLs starts one of each real backend the tests run against.
func backendURLs(t *testing.T) map[string]string {
	t.Helper()
	return map[string]string{
		"redis":  redistest.Start(t, nil).URL(),
		"server": startServer(t),
	}
}

func openSet(t *testing.T, url string, n int, opts *fencer.Options) *bench.FencerSet {
	t.Helper()
	set, err := bench.OpenFencer(context.Background(), url, n, false, opts)
	if err != nil {
		t.Fatalf("OpenFencer(%s): %v", url, err)
	}
	t.Cleanup(func() {
		if err := set.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return set
}

func TestWorkloads(t *testing.T) {
	urls := backendURLs(t)
	for _, backend := range []string{"redis", "server"} {
		for _, tc := range []struct {
			workload bench.Workload
			clients  int
			locks    int
		}{
			{bench.Uncontended, 8, 8},
			{bench.Contended, 6, 1},
			{bench.Mixed, 8, 2},
		} {
			t.Run(backend+"/"+string(tc.workload), func(t *testing.T) {
				set := openSet(t, urls[backend], tc.clients, nil)
				rep, err := bench.Run(context.Background(), bench.Config{
					Workload: tc.workload,
					Duration: 500 * time.Millisecond,
					Warmup:   100 * time.Millisecond,
				}, set.Lockers)
				if err != nil {
					t.Fatal(err)
				}
				checkReport(t, rep, tc.clients, tc.locks)
				switch tc.workload {
				case bench.Uncontended:
					if rep.Handoffs != 0 {
						t.Errorf("uncontended: %d hand-offs, want none: nobody waits for a lock of its own", rep.Handoffs)
					}
				case bench.Contended:
					if rep.Handoffs == 0 || rep.HandoffP50Ms == nil {
						t.Errorf("contended: no hand-off measured (%d grants)", rep.Grants)
					}
				}
			})
		}
	}
}

// checkReport checks what must hold of every report.
func checkReport(t *testing.T, rep *bench.Report, clients, locks int) {
	t.Helper()
	checkReportErrors(t, rep, clients, locks, false)
}

// checkReportErrors is checkReport that, with errorsOK, only logs errors:
// under the race detector 64 clients can starve a backend of CPU past its
// timeouts.
func checkReportErrors(t *testing.T, rep *bench.Report, clients, locks int, errorsOK bool) {
	t.Helper()
	if rep.Clients != clients || rep.Locks != locks {
		t.Errorf("clients, locks = %d, %d; want %d, %d", rep.Clients, rep.Locks, clients, locks)
	}
	if rep.Pairs <= 0 || rep.PairsPerSec <= 0 || rep.Grants <= 0 {
		t.Errorf("pairs %d (%.1f/s), grants %d; want some", rep.Pairs, rep.PairsPerSec, rep.Grants)
	}
	if rep.ErrorsTotal != 0 && errorsOK {
		t.Logf("%d errors (tolerated here): %v; samples %v", rep.ErrorsTotal, rep.Errors, rep.ErrorSamples)
	} else if rep.ErrorsTotal != 0 {
		t.Errorf("%d errors: %v; samples %v", rep.ErrorsTotal, rep.Errors, rep.ErrorSamples)
	}
	if rep.Overlaps != 0 {
		t.Errorf("%d overlaps: two clients held one lock", rep.Overlaps)
	}
	ordered := func(what string, ps ...*float64) {
		t.Helper()
		for i, p := range ps {
			if p == nil {
				t.Errorf("%s: percentile %d missing", what, i)
				return
			}
			if i > 0 && *p < *ps[i-1] {
				t.Errorf("%s: percentiles out of order: %v", what, deref(ps))
				return
			}
		}
	}
	ordered("acquire", rep.AcquireP50Ms, rep.AcquireP90Ms, rep.AcquireP99Ms, rep.AcquireP999Ms, rep.AcquireMaxMs)
	ordered("release", rep.ReleaseP50Ms, rep.ReleaseP99Ms, rep.ReleaseMaxMs)
	if rep.Handoffs > 0 {
		ordered("hand-off", rep.HandoffP50Ms, rep.HandoffP90Ms, rep.HandoffP99Ms, rep.HandoffP999Ms, rep.HandoffMaxMs)
	}
	if rep.Handoffs > rep.Grants {
		t.Errorf("%d hand-offs out of %d grants", rep.Handoffs, rep.Grants)
	}
	var sum int64
	for _, g := range rep.GrantsPerClient {
		sum += g
	}
	if len(rep.GrantsPerClient) != clients || sum != rep.Grants {
		t.Errorf("grants per client %v (sum %d); want %d entries summing to %d grants", rep.GrantsPerClient, sum, clients, rep.Grants)
	}
	if rep.GrantsMin > rep.GrantsMax || rep.Fairness < 0 || rep.Fairness > 1 {
		t.Errorf("fairness %.3f with fewest %d, most %d", rep.Fairness, rep.GrantsMin, rep.GrantsMax)
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"pairs_per_sec", "acquire_p50_ms", "acquire_p99_ms", "handoff_p50_ms", "errors",
		"acquire_p90_ms", "acquire_p999_ms", "grants_per_sec", "grants_max_per_client", "grants_min_per_client", "renewals_per_sec"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON has no %q: %s", k, b)
		}
	}
	var text strings.Builder
	if err := rep.WriteText(&text); err != nil || !strings.Contains(text.String(), "pairs") {
		t.Errorf("WriteText: %v\n%s", err, text.String())
	}
}

func deref(ps []*float64) []float64 {
	var out []float64
	for _, p := range ps {
		if p != nil {
			out = append(out, *p)
		}
	}
	return out
}

// Test64Clients runs 64 clients, each with its own connections, against
// every backend.
func Test64Clients(t *testing.T) {
	urls := backendURLs(t)
	var nodes []string
	for range 3 {
		nodes = append(nodes, redistest.Start(t, nil).Addr)
	}
	urls["redlock"] = "redlock://" + strings.Join(nodes, ",")
	for name, url := range urls {
		t.Run(name, func(t *testing.T) {
			set := openSet(t, url, 64, nil)
			rep, err := bench.Run(context.Background(), bench.Config{
				Workload: bench.Uncontended, Duration: 2 * time.Second, Warmup: time.Second,
			}, set.Lockers)
			if err != nil {
				t.Fatal(err)
			}
			checkReportErrors(t, rep, 64, 64, true)
		})
	}
}

// TestRenewals holds leases past a third of their TTL, so the Client
// renews them, and checks that the report counts the renewals.
func TestRenewals(t *testing.T) {
	url := startServer(t)
	set := openSet(t, url, 3, &fencer.Options{TTL: 600 * time.Millisecond})
	rep, err := bench.Run(context.Background(), bench.Config{
		Workload: bench.Uncontended, Duration: time.Second, Hold: 300 * time.Millisecond,
	}, set.Lockers)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Renewals == 0 || rep.RenewalsPerSec == 0 {
		t.Errorf("renewals %d (%.1f/s); want some with a 300ms hold of 600ms leases", rep.Renewals, rep.RenewalsPerSec)
	}
}

// TestShared runs every client over one shared Client.
func TestShared(t *testing.T) {
	url := startServer(t)
	set, err := bench.OpenFencer(context.Background(), url, 8, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	rep, err := bench.Run(context.Background(), bench.Config{Workload: bench.Contended, Duration: 300 * time.Millisecond}, set.Lockers)
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, rep, 8, 1)
}

// memLock is an in-process Locker for driver tests: a FIFO mutex per name,
// or, broken, one that grants every request.
type memLock struct {
	broken bool
	mu     sync.Mutex
	locks  map[string]chan struct{}
}

func (m *memLock) ch(name string) chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.locks == nil {
		m.locks = make(map[string]chan struct{})
	}
	c, ok := m.locks[name]
	if !ok {
		c = make(chan struct{}, 1)
		m.locks[name] = c
	}
	return c
}

func (m *memLock) Acquire(ctx context.Context, name string) (bench.Held, error) {
	if m.broken {
		time.Sleep(100 * time.Microsecond)
		return memHeld(func() {}), nil
	}
	c := m.ch(name)
	select {
	case c <- struct{}{}:
		return memHeld(func() { <-c }), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type memHeld func()

func (h memHeld) Release(context.Context) error { h(); return nil }

func lockers(l bench.Locker, n int) []bench.Locker {
	out := make([]bench.Locker, n)
	for i := range out {
		out[i] = l
	}
	return out
}

// TestOverlapsCounted checks that the driver sees a lock that grants two
// clients at once.
func TestOverlapsCounted(t *testing.T) {
	rep, err := bench.Run(context.Background(), bench.Config{
		Workload: bench.Contended, Duration: 200 * time.Millisecond, Hold: time.Millisecond,
	}, lockers(&memLock{broken: true}, 4))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Overlaps == 0 {
		t.Error("a lock that grants everyone: no overlap counted")
	}
	rep, err = bench.Run(context.Background(), bench.Config{
		Workload: bench.Contended, Duration: 200 * time.Millisecond, Hold: 100 * time.Microsecond,
	}, lockers(&memLock{}, 4))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Overlaps != 0 || rep.Handoffs == 0 {
		t.Errorf("an in-process mutex: %d overlaps, %d hand-offs; want none and some", rep.Overlaps, rep.Handoffs)
	}
}

type failingLocker struct{ err error }

func (f failingLocker) Acquire(context.Context, string) (bench.Held, error) { return nil, f.err }

func TestErrorsByKind(t *testing.T) {
	err := fmt.Errorf("store says: %w", fencer.ErrLeaseLost)
	rep, runErr := bench.Run(context.Background(), bench.Config{Workload: bench.Uncontended, Duration: 100 * time.Millisecond},
		[]bench.Locker{failingLocker{err}})
	if runErr != nil {
		t.Fatal(runErr)
	}
	if rep.Errors["acquire:lease_lost"] == 0 || rep.ErrorSamples["acquire:lease_lost"] != err.Error() || rep.Pairs != 0 {
		t.Errorf("errors %v, samples %v, pairs %d", rep.Errors, rep.ErrorSamples, rep.Pairs)
	}
	if rep.AcquireP50Ms != nil {
		t.Errorf("acquire p50 %v with no grant; want null", *rep.AcquireP50Ms)
	}
}

func TestInterrupted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	rep, err := bench.Run(ctx, bench.Config{Workload: bench.Mixed, Duration: 10 * time.Second, Warmup: 100 * time.Millisecond},
		lockers(&memLock{}, 4))
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Interrupted || rep.DurationS > 1 || rep.Pairs == 0 {
		t.Errorf("interrupted %v after %.2fs with %d pairs; want true, about 0.2s, some", rep.Interrupted, rep.DurationS, rep.Pairs)
	}

	ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := bench.Run(ctx, bench.Config{Workload: bench.Mixed, Duration: time.Second, Warmup: 5 * time.Second},
		lockers(&memLock{}, 4)); err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("interrupted in the warm-up: %v; want an error wrapping the deadline", err)
	}
}

func TestValidate(t *testing.T) {
	ok := bench.Config{Workload: bench.Mixed, Duration: time.Second}
	for _, tc := range []struct {
		name    string
		edit    func(*bench.Config)
		clients int
		want    string
	}{
		{"no workload", func(c *bench.Config) { c.Workload = "" }, 1, "uncontended, contended or mixed"},
		{"zero clients", func(c *bench.Config) {}, 0, "1 to 4096"},
		{"too many clients", func(c *bench.Config) {}, 5000, "1 to 4096"},
		{"locks with uncontended", func(c *bench.Config) { c.Workload, c.Locks = bench.Uncontended, 2 }, 4, "0 or 4 with uncontended"},
		{"locks with contended", func(c *bench.Config) { c.Workload, c.Locks = bench.Contended, 2 }, 4, "0 or 1 with contended"},
		{"negative locks", func(c *bench.Config) { c.Locks = -1 }, 4, "1 to 1048576"},
		{"short duration", func(c *bench.Config) { c.Duration = time.Millisecond }, 4, "100ms to 24h"},
		{"negative warm-up", func(c *bench.Config) { c.Warmup = -time.Second }, 4, "0 to 1h"},
		{"negative hold", func(c *bench.Config) { c.Hold = -time.Second }, 4, "0 to 1h"},
		{"bad prefix", func(c *bench.Config) { c.Prefix = "a\nb" }, 4, "no control characters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.edit(&c)
			err := c.Validate(tc.clients)
			if err == nil || !errors.Is(err, fencer.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate: %v; want an invalid-argument error accepting %q", err, tc.want)
			}
		})
	}
	if err := ok.Validate(4); err != nil {
		t.Errorf("a good config: %v", err)
	}
}
