package redlock

import (
	"testing"
	"time"
)

// TestNodeTimeout: the default is TTL/20, at least 2 ms and at most 500 ms;
// a configured one is used as it is.
func TestNodeTimeout(t *testing.T) {
	b := &Backend{}
	for _, tc := range []struct{ ttl, want time.Duration }{
		{10 * time.Millisecond, 2 * time.Millisecond},
		{40 * time.Millisecond, 2 * time.Millisecond},
		{300 * time.Millisecond, 15 * time.Millisecond},
		{time.Second, 50 * time.Millisecond},
		{15 * time.Second, 500 * time.Millisecond},
		{24 * time.Hour, 500 * time.Millisecond},
	} {
		if got := b.nodeTimeout(tc.ttl); got != tc.want {
			t.Errorf("default node timeout for TTL %v = %v, want %v", tc.ttl, got, tc.want)
		}
	}
	b.fixedTimeout = 7 * time.Millisecond
	if got := b.nodeTimeout(time.Hour); got != 7*time.Millisecond {
		t.Errorf("configured node timeout: %v", got)
	}
}
