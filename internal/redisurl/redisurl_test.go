package redisurl

import (
	"reflect"
	"strings"
	"testing"
)

func TestSplit(t *testing.T) {
	p, reason := Split("redlock://u%40x:p%2Fw@a:1,[::1]:2,B:3/4", "redlock", true)
	want := Parts{User: "u@x", Password: "p/w", Addrs: []string{"a:1", "[::1]:2", "B:3"}, DB: 4}
	if reason != "" || !reflect.DeepEqual(p, want) {
		t.Fatalf("Split = %+v, %q; want %+v", p, reason, want)
	}
	for _, tc := range []struct{ url, want string }{
		{"redis://:secret@h:0", "port \"0\""},
		{"redis://h:1?x=y", "no options"},
		{"redis://h", "not host:port"},
		{"http://h:1", "scheme is \"http\""},
		{"redis://a,b:1", "not allowed"},
	} {
		_, reason := Split(tc.url, "redis", false)
		if !strings.Contains(reason, tc.want) || strings.Contains(reason, "secret") {
			t.Errorf("Split(%q) reason %q, want it to say %q and never the password", tc.url, reason, tc.want)
		}
	}
	if got := Redact("redis://u:secret@h:1"); got != "redis://u:xxxxx@h:1" {
		t.Errorf("Redact = %q", got)
	}
}
