package scenario

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/fencerlock/fencer/internal/check/analyze"
	"github.com/fencerlock/fencer/internal/check/harness"
)

func TestScheduleIsReproducible(t *testing.T) {
	nodes, clients := []string{"n1", "n2", "n3"}, []string{"c1", "c2", "c3"}
	a := Schedule(42, 5*time.Minute, 10*time.Second, nodes, clients)
	b := Schedule(42, 5*time.Minute, 10*time.Second, nodes, clients)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("the same seed gave two schedules:\n%v\n%v", a, b)
	}
	c := Schedule(43, 5*time.Minute, 10*time.Second, nodes, clients)
	if reflect.DeepEqual(a, c) {
		t.Fatal("seeds 42 and 43 gave the same schedule")
	}
	if len(a) < 15 {
		t.Fatalf("5 minutes with a fault about every 10 s gave only %d faults", len(a))
	}
}

func TestScheduleShape(t *testing.T) {
	nodes, clients := []string{"n1", "n2", "n3"}, []string{"c1", "c2"}
	for seed := uint64(0); seed < 200; seed++ {
		d, every := 2*time.Minute, 10*time.Second
		s := Schedule(seed, d, every, nodes, clients)
		var end time.Duration
		for i, f := range s {
			if f.At < end {
				t.Fatalf("seed %d: fault %d (%s) starts before the previous one ended at %v", seed, i, f, end)
			}
			if f.At+f.Duration > d {
				t.Fatalf("seed %d: fault %s runs past the end %v", seed, f, d)
			}
			if f.Duration < 500*time.Millisecond || f.Duration > 6*time.Second {
				t.Fatalf("seed %d: fault %s lasts %v", seed, f, f.Duration)
			}
			if !slices.Contains(soakKinds(), f.Kind) {
				t.Fatalf("seed %d: unknown kind in %s", seed, f)
			}
			if !slices.Contains(nodes, f.Target) && !slices.Contains(clients, f.Target) {
				t.Fatalf("seed %d: fault %s hits nothing known", seed, f)
			}
			end = f.At + f.Duration
		}
	}
	// Every kind comes up over enough seeds.
	seen := map[string]bool{}
	for seed := uint64(0); seed < 50; seed++ {
		for _, f := range Schedule(seed, time.Minute, 3*time.Second, nodes, clients) {
			seen[f.Kind] = true
		}
	}
	for _, k := range soakKinds() {
		if !seen[k] {
			t.Errorf("no schedule of 50 seeds has a %s fault", k)
		}
	}
	if s := Schedule(1, 0, time.Second, nodes, clients); s != nil {
		t.Errorf("a zero duration gave %v", s)
	}
}

func TestScenariosAreWellFormed(t *testing.T) {
	names := map[string]bool{}
	for _, s := range All() {
		if names[s.Name] {
			t.Errorf("two scenarios are called %q", s.Name)
		}
		names[s.Name] = true
		if s.Title == "" || s.Source == "" || s.Run == nil || len(s.Cases) == 0 {
			t.Errorf("%s: a scenario needs a title, a source, a script and cases", s.Name)
		}
		labels := map[string]bool{}
		for _, c := range s.Cases {
			if labels[c.Backend] {
				t.Errorf("%s: two cases are labelled %q", s.Name, c.Backend)
			}
			labels[c.Backend] = true
			if c.Why == "" {
				t.Errorf("%s × %s: no reason for the expectation", s.Name, c.Backend)
			}
			if !slices.Contains(harness.Kinds(), c.Setup.Kind) {
				t.Errorf("%s × %s: unknown kind %q", s.Name, c.Backend, c.Setup.Kind)
			}
			switch c.Expected {
			case analyze.ExpectSafe:
				if len(c.Predicts) > 0 {
					t.Errorf("%s × %s: a safe case predicts violations", s.Name, c.Backend)
				}
			case analyze.ExpectViolation:
				if len(c.MustNot) > 0 {
					t.Errorf("%s × %s: a violation case with MustNot", s.Name, c.Backend)
				}
			default:
				t.Errorf("%s × %s: expectation %q", s.Name, c.Backend, c.Expected)
			}
		}
		if _, err := Lookup(s.Name); err != nil {
			t.Error(err)
		}
	}
	// DESIGN.md's eight, the unfenced control, and the server's seven.
	for _, n := range []string{"redis-failover", "clock-jump", "redlock-pause-in-acquire", "redlock-pause-after-acquire",
		"redlock-restart", "pause-33-34", "delayed-write", "validity", "lock-value", "unfenced-increments",
		"leader-crash", "leader-partition", "leader-pause", "kill-all", "membership", "follower-clock-jump", "soak"} {
		if !names[n] {
			t.Errorf("scenario %s is missing", n)
		}
	}
	if _, err := Lookup("nope"); err == nil {
		t.Error("Lookup(nope) found something")
	}
}

func TestExpectation(t *testing.T) {
	c := Case{Expected: analyze.ExpectViolation, Predicts: []analyze.Violation{analyze.ViolationLostUpdate, analyze.ViolationBelievedOverlap}}
	if got := c.Expectation(); got != "violation (lost-update or believed-overlap)" {
		t.Errorf("Expectation() = %q", got)
	}
	c = Case{Expected: analyze.ExpectSafe, MustNot: []analyze.Violation{analyze.ViolationBelievedOverlap}}
	if got := c.Expectation(); got != "safe, and no believed-overlap" {
		t.Errorf("Expectation() = %q", got)
	}
}
