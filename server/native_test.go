package server_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/fencerlock/fencer/internal/wire"
)

// TestNativeBadInput sends malformed and invalid native-protocol requests:
// invalid fields get InvalidArgument answers on a connection that stays
// open; a malformed frame closes the connection; the server keeps serving
// and its state is unchanged by any of it.
func TestNativeBadInput(t *testing.T) {
	nodes := startCluster(t, 1)
	addr := nodes[0].Addr()
	// The new leader records its own address through the log once; wait
	// for the state to settle before taking its digest.
	hashBefore, _ := nodes[0].StateHash()
	for settled := 0; settled < 3; {
		time.Sleep(50 * time.Millisecond)
		h, _ := nodes[0].StateHash()
		if h == hashBefore {
			settled++
		} else {
			hashBefore, settled = h, 0
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := wire.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, tc := range []struct {
		name string
		req  wire.Request
	}{
		{"session 0", wire.Request{Kind: wire.KindAcquire, Name: "a", TTLMillis: 1000}},
		{"empty name", wire.Request{Kind: wire.KindAcquire, Session: 1, TTLMillis: 1000}},
		{"long name", wire.Request{Kind: wire.KindAcquire, Session: 1, Name: string(make([]byte, 300)), TTLMillis: 1000}},
		{"control char", wire.Request{Kind: wire.KindAcquire, Session: 1, Name: "a\x01", TTLMillis: 1000}},
		{"ttl too short", wire.Request{Kind: wire.KindAcquire, Session: 1, Name: "a", TTLMillis: 9}},
		{"ttl too long", wire.Request{Kind: wire.KindAcquire, Session: 1, Name: "a", TTLMillis: 86400001}},
		{"lock delay too long", wire.Request{Kind: wire.KindAcquire, Session: 1, Name: "a", TTLMillis: 1000, DelayMillis: 86400001}},
		{"release session 0", wire.Request{Kind: wire.KindRelease}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := c.Call(ctx, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if r.Code != wire.CodeInvalidArgument || r.Message == "" {
				t.Fatalf("got %+v, want InvalidArgument with a message", r)
			}
		})
	}
	// Releasing an unknown session or with a wrong token changes nothing.
	if r, err := c.Call(ctx, wire.Request{Kind: wire.KindRelease, Session: 424242, Token: 7}); err != nil || r.Code != wire.CodeOK || r.Released {
		t.Fatalf("release of an unknown session: %+v %v", r, err)
	}
	// Keep-alive of unknown sessions reports them expired.
	if r, err := c.Call(ctx, wire.Request{Kind: wire.KindKeepAlive, Sessions: []uint64{1, 2}}); err != nil || len(r.Expired) != 2 {
		t.Fatalf("keep-alive of unknown sessions: %+v %v", r, err)
	}

	// Malformed frames: the server closes the connection.
	for _, frame := range [][]byte{
		{0},                            // zero-length frame
		{3, 9, 1, 0},                   // unknown kind
		{4, byte(wire.KindRelease), 1}, // truncated fields
		{0xff, 0xff, 0xff, 0xff, 0x0f}, // far too long
	} {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		nc.Write([]byte(wire.Magic))
		nc.Write(frame)
		r := bufio.NewReader(nc)
		for {
			if _, err := wire.ReadFrame(r, nil); err != nil {
				if err != io.EOF {
					// A reset or a malformed close is as good as EOF, but a
					// timeout means the server kept a broken stream open.
					if ne, ok := err.(net.Error); ok && ne.Timeout() {
						t.Fatalf("frame %x: connection not closed", frame)
					}
				}
				break
			}
		}
		nc.Close()
	}

	// The node still serves, and nothing above changed its state.
	if hashAfter, _ := nodes[0].StateHash(); hashAfter != hashBefore {
		t.Fatal("bad requests changed the replicated state")
	}
	r, err := c.Call(ctx, wire.Request{Kind: wire.KindAcquire, Session: 99, Name: "after", TTLMillis: 1000})
	if err != nil || !r.Granted {
		t.Fatalf("acquire after bad input: %+v %v", r, err)
	}
}
