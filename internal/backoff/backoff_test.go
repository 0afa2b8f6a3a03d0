package backoff

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fencerlock/fencer"
)

func TestBackoff(t *testing.T) {
	b := New(20*time.Millisecond, 100*time.Millisecond)
	for i, step := range []time.Duration{20, 40, 80, 100, 100} {
		step *= time.Millisecond
		if d := b.Next(-1); d < step/2 || d > step {
			t.Errorf("attempt %d: wait %v, want %v jittered down by up to half", i, d, step)
		}
	}
	if d := b.Next(3 * time.Millisecond); d != 4*time.Millisecond {
		t.Errorf("a lease with 3ms left: wait %v, want 4ms", d)
	}
}

func TestBoundsFill(t *testing.T) {
	const ms = time.Millisecond
	def := Bounds{Min: 20 * ms, Max: time.Second}
	for _, tc := range []struct {
		name    string
		in      Bounds
		want    Bounds
		wantErr string // a substring of the error; "" for none
	}{
		{"Zero", Bounds{}, def, ""},
		{"OnlyMin", Bounds{Min: 50 * ms}, Bounds{Min: 50 * ms, Max: time.Second}, ""},
		{"OnlyMinAboveDefaultMax", Bounds{Min: 2 * time.Second}, Bounds{Min: 2 * time.Second, Max: 2 * time.Second}, ""},
		{"OnlyMaxBelowDefaultMin", Bounds{Max: 5 * ms}, Bounds{Min: 5 * ms, Max: 5 * ms}, ""},
		{"OnlyMax", Bounds{Max: 2 * time.Second}, Bounds{Min: 20 * ms, Max: 2 * time.Second}, ""},
		{"Both", Bounds{Min: 30 * ms, Max: 40 * ms}, Bounds{Min: 30 * ms, Max: 40 * ms}, ""},
		{"NegativeMin", Bounds{Min: -ms}, Bounds{}, `invalid pkg MinBackoff "-1ms": it is negative; accepted: 0 (the default, 20ms) or a positive duration`},
		{"NegativeMax", Bounds{Max: -ms}, Bounds{}, `invalid pkg MaxBackoff "-1ms": it is negative; accepted: 0 (the default, 1s) or a positive duration`},
		{"MinAboveMax", Bounds{Min: 50 * ms, Max: 40 * ms}, Bounds{}, `invalid pkg MinBackoff "50ms": it is above MaxBackoff 40ms; accepted: a MinBackoff no larger than MaxBackoff`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.in.Fill("pkg", def)
			if tc.wantErr != "" {
				if !errors.Is(err, fencer.ErrInvalid) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Fill(%+v) = %v; want an InvalidError with %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Fill(%+v) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			}
		})
	}
}
