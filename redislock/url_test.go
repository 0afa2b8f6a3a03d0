package redislock_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/redislock"
)

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		url        string
		addr       string
		user, pass string
		db         int
	}{
		{"redis://127.0.0.1:6380", "127.0.0.1:6380", "", "", 0},
		{"redis://127.0.0.1:6380/0", "127.0.0.1:6380", "", "", 0},
		{"redis://localhost:1/15", "localhost:1", "", "", 15},
		{"redis://[::1]:65535/2", "[::1]:65535", "", "", 2},
		{"redis://app:s3cret@redis.internal:6380", "redis.internal:6380", "app", "s3cret", 0},
		{"redis://:legacy@h:7000/1", "h:7000", "", "legacy", 1},
		{"redis://u:p%40ss%2Fw@h:7000", "h:7000", "u", "p@ss/w", 0},
		{"redis://u:p@ss/w@h:7000", "h:7000", "u", "p@ss/w", 0}, // unencoded, taken whole
	} {
		o, err := redislock.ParseURL(tc.url)
		if err != nil {
			t.Errorf("ParseURL(%q): %v", tc.url, err)
			continue
		}
		if o.Addr != tc.addr || o.Username != tc.user || o.Password != tc.pass || o.DB != tc.db {
			t.Errorf("ParseURL(%q) = addr %q user %q password %q db %d; want %q %q %q %d",
				tc.url, o.Addr, o.Username, o.Password, o.DB, tc.addr, tc.user, tc.pass, tc.db)
		}
	}
}

func TestParseURLErrors(t *testing.T) {
	for _, tc := range []struct {
		url    string
		reason string // a part of the message
	}{
		{"", "does not start with redis://"},
		{"127.0.0.1:6379", "does not start with redis://"},
		{"rediss://h:1", `scheme is "rediss"`},
		{"redlock://a:1,b:2,c:3", `scheme is "redlock"`},
		{"REDIS://h:1", `scheme is "REDIS"`},
		{"redis://", "no host:port"},
		{"redis:///0", "no host:port"},
		{"redis://host", "not host:port"},
		{"redis://host:", "no port"},
		{"redis://:6379", "no host"},
		{"redis://host:0", "port \"0\""},
		{"redis://host:65536", "port \"65536\""},
		{"redis://host:+1", "port \"+1\""},
		{"redis://host:06379", "port \"06379\""},
		{"redis://host:port", "port \"port\""},
		{"redis://h:1/", "database \"\""},
		{"redis://h:1/x", "database \"x\""},
		{"redis://h:1/-1", "database \"-1\""},
		{"redis://h:1/01", "database \"01\""},
		{"redis://h:1/0/1", "database \"0/1\""},
		{"redis://h:1/99999999999", "database"},
		{"redis://h:1?db=2", "query"},
		{"redis://h:1/0?protocol=3", "query"},
		{"redis://h:1#frag", "fragment"},
		{"redis://user@h:1", "no password"},
		{"redis://user:@h:1", "password is empty"},
		{"redis://u:%zz@h:1", "percent-encoded"},
		{"redis://a b:1", "not allowed"},
		{"redis://a,b:1", "not allowed"},
		{"redis://[::1:1", "not host:port"},
		{"redis://::1:6379", "not host:port"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			o, err := redislock.ParseURL(tc.url)
			if err == nil {
				t.Fatalf("ParseURL(%q) = %+v, want an error", tc.url, o)
			}
			var inv *fencer.InvalidError
			if !errors.As(err, &inv) || !errors.Is(err, fencer.ErrInvalid) {
				t.Fatalf("ParseURL(%q) error %T %v is not an *fencer.InvalidError", tc.url, err, err)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.reason) {
				t.Errorf("error %q does not say %q", msg, tc.reason)
			}
			if !strings.Contains(msg, "accepted: redis://[user:password@]host:port[/db]") {
				t.Errorf("error %q does not say what is accepted", msg)
			}
		})
	}
}

// TestParseURLRedactsPassword: errors quote the URL, never its password.
func TestParseURLRedactsPassword(t *testing.T) {
	for _, u := range []string{
		"redis://user:hunter2@host",
		"redis://user:hunter2@host:0",
		"redis://:hunter2@host:1/x",
		"redis://user:hun/ter2@host:1?db=1",
		"rediss://user:hunter2@host:1",
	} {
		_, err := redislock.ParseURL(u)
		if err == nil {
			t.Fatalf("ParseURL(%q) succeeded", u)
		}
		if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "ter2") {
			t.Errorf("error for %q reveals the password: %v", u, err)
		}
	}
}
