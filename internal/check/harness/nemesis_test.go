package harness

import (
	"testing"
	"time"

	"github.com/fencerlock/fencer/internal/faults/netproxy"
)

func TestLinkFaultKind(t *testing.T) {
	for _, tc := range []struct {
		f    netproxy.Fault
		want string
	}{
		{netproxy.Cut(), "cut"},
		{netproxy.Reset(), "reset"},
		{netproxy.Hold(netproxy.Up), "hold up"},
		{netproxy.Blackhole(netproxy.Down), "blackhole down"},
		{netproxy.Delay(netproxy.Both, 250*time.Millisecond, 0), "delay 250ms"},
		{netproxy.DropNew(), "up=pass down=pass conns=drop"},
	} {
		if got := linkFaultKind(tc.f); got != tc.want {
			t.Errorf("linkFaultKind(%v) = %q, want %q", tc.f, got, tc.want)
		}
	}
}

func TestSetupDefaults(t *testing.T) {
	for _, tc := range []struct {
		s        Setup
		unfenced bool
		nodes    int
	}{
		{Setup{Kind: KindFencer}, false, 3},
		{Setup{Kind: KindFencer, Unfenced: true}, true, 3},
		{Setup{Kind: KindRedlock}, true, 5},
		{Setup{Kind: KindRedis, Naive: "v"}, true, 0},
		{Setup{Kind: KindPostgres}, false, 0},
	} {
		s := tc.s
		if err := s.fill(); err != nil {
			t.Fatal(err)
		}
		if s.StoreUnfenced() != tc.unfenced || s.Nodes != tc.nodes {
			t.Errorf("%+v: unfenced %v nodes %d, want %v %d", tc.s, s.StoreUnfenced(), s.Nodes, tc.unfenced, tc.nodes)
		}
	}
	for _, bad := range []Setup{{Kind: "etcd"}, {Kind: KindFencer, Naive: "v"}} {
		if err := bad.fill(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}
