package traffic

import (
	"context"
	"net"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fencerlock/fencer/internal/check/analyze"
	"github.com/fencerlock/fencer/internal/check/procs"
	"github.com/fencerlock/fencer/internal/history"
	"github.com/fencerlock/fencer/internal/store"
)

func TestArgsRoundTrip(t *testing.T) {
	c := Config{Name: "c1", Incarnation: 2, History: "/tmp/h.jsonl", Backend: "redis://127.0.0.1:1", Lock: "L", Key: "K",
		Store: "http://127.0.0.1:2", Workload: analyze.WorkloadSet, Iterations: 3, TTL: 2 * time.Second,
		AcquireTimeout: time.Second, StoreTimeout: 500 * time.Millisecond, Hold: time.Millisecond, Think: 2 * time.Millisecond,
		Unfenced: true, NoLeaseCheck: true, Failpoints: "before-write=1*stop", RedlockNodeTimeout: time.Second}
	routed := c
	routed.Backend, routed.RedlockNodeTimeout = "fencer://127.0.0.1:3,127.0.0.1:4", 0
	routed.Via = map[string]string{"127.0.0.1:3": "127.0.0.1:13", "127.0.0.1:4": "[::1]:14"}
	for _, c := range []Config{c, routed} {
		got, err := ParseArgs(c.Args(), &strings.Builder{})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Fatalf("ParseArgs(Args()) =\n%+v\nwant\n%+v", got, c)
		}
	}
}

func TestParseArgsErrors(t *testing.T) {
	base := []string{"--name", "c1", "--history", "/tmp/x", "--backend", "redis://x:1", "--store", "http://127.0.0.1:1"}
	for _, tc := range []struct {
		extra []string
		want  string
	}{
		{[]string{"--failpoints", "before-wrte=stop"}, `unknown point "before-wrte"`},
		{[]string{"--workload", "queue"}, `workload "queue"`},
		{[]string{"--ttl", "1ms"}, "ttl"},
		{[]string{"--store", "ftp://x"}, "store"},
		{[]string{"--iterations", "-1"}, "iterations"},
		{[]string{"extra"}, "unexpected argument"},
		{[]string{"--via", "127.0.0.1:1=127.0.0.1:2"}, "only a fencer:// backend"},
		{[]string{"--via", "127.0.0.1:1"}, "has no '='"},
		{[]string{"--via", "127.0.0.1:1=nowhere"}, `"nowhere" is not host:port`},
	} {
		_, err := ParseArgs(append(slices.Clone(base), tc.extra...), &strings.Builder{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseArgs(%v) = %v, want an error containing %q", tc.extra, err, tc.want)
		}
	}
	if _, err := ParseArgs(nil, &strings.Builder{}); err == nil || !strings.Contains(err.Error(), "no backend URL") {
		t.Errorf("ParseArgs(nil) = %v", err)
	}
}

// startStore serves a fenced store in this process.
func startStore(t *testing.T) string {
	t.Helper()
	s, err := store.Open(store.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		<-done
		s.Close()
	})
	return "http://" + ln.Addr().String()
}

// TestWorkersAgainstRedis runs two workers on one lock and checks that
// their histories analyze cleanly: every operation paired, tokens in
// order, no update lost. With the naive lock and --unfenced it does the
// same without tokens.
func TestWorkersAgainstRedis(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, err := procs.StartRedis(ctx, t.TempDir(), "redis", procs.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, tc := range []struct {
		name     string
		backend  string
		unfenced bool
		workload analyze.Workload
	}{
		{"redislock", "redis://" + r.Addr, false, analyze.WorkloadCounter},
		{"naive-set", NaiveScheme + "://" + r.Addr + "?value=v", true, analyze.WorkloadSet},
	} {
		t.Run(tc.name, func(t *testing.T) {
			storeURL := startStore(t)
			dir := t.TempDir()
			errs := make(chan error, 2)
			for _, name := range []string{"c1", "c2"} {
				go func() {
					errs <- Run(ctx, Config{Name: name, History: filepath.Join(dir, name+".jsonl"), Backend: tc.backend,
						Lock: tc.name, Store: storeURL, Iterations: 5, TTL: time.Second, Unfenced: tc.unfenced, Workload: tc.workload})
				}()
			}
			for range 2 {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
			events, torn, err := history.Merge(filepath.Join(dir, "c1.jsonl"), filepath.Join(dir, "c2.jsonl"))
			if err != nil || torn != 0 {
				t.Fatalf("merge: %v, torn %d", err, torn)
			}
			final := analyze.FinalState{}
			var acked int
			var last string
			for _, e := range events {
				if e.Kind == history.WriteInvoke {
					last = e.Value
				}
				if e.Kind == history.WriteOK {
					acked++
				}
			}
			if acked != 10 {
				t.Fatalf("%d writes acknowledged, want 10 (5 iterations of 2 workers)", acked)
			}
			if tc.workload == analyze.WorkloadSet {
				final.Sets = map[string][]string{tc.name: strings.Split(last, ",")}
			} else {
				final.Counters = map[string]int64{tc.name: 10}
			}
			a, err := analyze.Analyze(&analyze.Run{Scenario: "t", Backend: tc.name, Expected: analyze.ExpectSafe,
				Workload: tc.workload, History: events, Final: final, StoreUnfenced: tc.unfenced}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if a.Result.Verdict != analyze.VerdictPass || a.Result.Overlaps.Observed != 0 {
				t.Fatalf("verdict %s, observed %s: %v", a.Result.Verdict, a.Result.Observed, a.Result.Reasons)
			}
			for _, e := range events {
				if e.Kind == history.AcquireOK && e.Attrs[analyze.AttrValidUntil] == "" {
					t.Fatalf("acquire-ok without valid_until: %+v", e)
				}
			}
		})
	}
}

func TestRunRefusesTokenlessFenced(t *testing.T) {
	err := Run(context.Background(), Config{Name: "c1", History: filepath.Join(t.TempDir(), "h"),
		Backend: NaiveScheme + "://127.0.0.1:1?value=v", Store: "http://127.0.0.1:1", Iterations: 1})
	if err == nil || !strings.Contains(err.Error(), "--unfenced") {
		t.Fatalf("Run = %v, want an error asking for --unfenced", err)
	}
}
