package rediskey

import (
	"testing"
	"time"
)

func TestKey(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"a", "p:{a}"},
		{"", "p:{}"},
		{"}x", "p:{%}x}"},
		{"%x", "p:{%%x}"},
		{"x}", "p:{x}}"},
	} {
		if got := Key("p:", tc.name); got != tc.want {
			t.Errorf("Key(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestNewValue(t *testing.T) {
	a, b := NewValue(), NewValue()
	if len(a) != 32 || a == b {
		t.Errorf("NewValue() = %q, then %q: want two different 32-digit hex strings", a, b)
	}
}

func TestMillis(t *testing.T) {
	for _, tc := range []struct {
		ttl  time.Duration
		want int64
	}{{time.Second, 1000}, {time.Millisecond + 1, 2}, {10 * time.Millisecond, 10}} {
		if got := Millis(tc.ttl); got != tc.want {
			t.Errorf("Millis(%v) = %d, want %d", tc.ttl, got, tc.want)
		}
	}
}
