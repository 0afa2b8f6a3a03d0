package backoff

import (
	"testing"
	"time"
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
