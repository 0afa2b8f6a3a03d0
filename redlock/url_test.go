package redlock_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/redlock"
)

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		url        string
		addrs      string
		user, pass string
		db         int
	}{
		{"redlock://a:1,b:2,c:3", "a:1 b:2 c:3", "", "", 0},
		{"redlock://10.0.0.1:6379,10.0.0.2:6379,10.0.0.3:6379,10.0.0.4:6379,10.0.0.5:6379",
			"10.0.0.1:6379 10.0.0.2:6379 10.0.0.3:6379 10.0.0.4:6379 10.0.0.5:6379", "", "", 0},
		{"redlock://[::1]:1,[::1]:2,127.0.0.1:3/4", "[::1]:1 [::1]:2 127.0.0.1:3", "", "", 4},
		{"redlock://u:p%2Fw@a:1,b:2,c:3", "a:1 b:2 c:3", "u", "p/w", 0},
		{"redlock://:secret@a:1,b:2,c:3/0", "a:1 b:2 c:3", "", "secret", 0},
	} {
		opts, err := redlock.ParseURL(tc.url)
		if err != nil {
			t.Errorf("ParseURL(%q): %v", tc.url, err)
			continue
		}
		var addrs []string
		for _, o := range opts {
			addrs = append(addrs, o.Addr)
			if o.Username != tc.user || o.Password != tc.pass || o.DB != tc.db {
				t.Errorf("ParseURL(%q): node %s has user %q password %q db %d; want %q %q %d", tc.url, o.Addr, o.Username, o.Password, o.DB, tc.user, tc.pass, tc.db)
			}
		}
		if got := strings.Join(addrs, " "); got != tc.addrs {
			t.Errorf("ParseURL(%q) nodes = %s, want %s", tc.url, got, tc.addrs)
		}
	}
}

func TestParseURLErrors(t *testing.T) {
	for _, tc := range []struct {
		url    string
		reason string
	}{
		{"", "does not start with redlock://"},
		{"a:1,b:2,c:3", "does not start with redlock://"},
		{"redis://a:1", `scheme is "redis"`},
		{"redlock://", "names no nodes"},
		{"redlock://a:1", "names 1 nodes"},
		{"redlock://a:1,b:2", "names 2 nodes"},
		{"redlock://a:1,b:2,c:3,d:4", "names 4 nodes"},
		{"redlock://a:1,a:1,b:2", "nodes 1 and 2 are both a:1"},
		{"redlock://A:1,b:2,a:1", "nodes 1 and 3 are both a:1"},
		{"redlock://a:1,b:2,c", "node 3: the address \"c\" is not host:port"},
		{"redlock://a:1,,c:3", "node 2: the address is empty"},
		{"redlock://a:1,b:2,c:3,", "node 4: the address is empty"},
		{"redlock://a:1,b:0,c:3", "node 2: the port \"0\""},
		{"redlock://a:1,b:65536,c:3", "node 2: the port \"65536\""},
		{"redlock://a:1,b:x,c:3", "node 2: the port \"x\""},
		{"redlock://a:1,:2,c:3", "node 2: the address \":2\" has no host"},
		{"redlock://a:1,b:2,c:3/x", "database \"x\""},
		{"redlock://a:1,b:2,c:3?x=1", "query"},
		{"redlock://user@a:1,b:2,c:3", "no password"},
		{"redlock://a b:1,b:2,c:3", "not allowed"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			o, err := redlock.ParseURL(tc.url)
			if err == nil {
				t.Fatalf("ParseURL(%q) = %v, want an error", tc.url, o)
			}
			var inv *fencer.InvalidError
			if !errors.As(err, &inv) || !errors.Is(err, fencer.ErrInvalid) {
				t.Fatalf("error %T %v is not an *fencer.InvalidError", err, err)
			}
			if !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("error %q does not say %q", err, tc.reason)
			}
			if !strings.Contains(err.Error(), "accepted: redlock://") {
				t.Errorf("error %q does not say what is accepted", err)
			}
		})
	}
	if _, err := redlock.ParseURL("redlock://u:hunter2@a:1,b:2"); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error %v reveals the password", err)
	}
}
