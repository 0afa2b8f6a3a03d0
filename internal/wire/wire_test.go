package wire

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	reqs := []Request{
		{Kind: KindAcquire, ID: 1, Session: 1 << 60, Name: "jobs/ünï", TTLMillis: 15000, Wait: true, DelayMillis: 5},
		{Kind: KindAcquire, ID: 2, Session: 7, Name: "", TTLMillis: 0},
		{Kind: KindRelease, ID: 3, Session: 9, Token: 34},
		{Kind: KindKeepAlive, ID: 4, Sessions: []uint64{1, 2, 1 << 63}},
		{Kind: KindKeepAlive, ID: 5, Sessions: []uint64{}},
	}
	for _, want := range reqs {
		frame := AppendRequest(nil, &want)
		p, err := ReadFrame(bufio.NewReader(bytes.NewReader(frame)), nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeRequest(p)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("request %+v came back as %+v, %v", want, got, err)
		}
	}
	resps := []Response{
		{Kind: KindAcquire, ID: 1, Granted: true, Token: 33},
		{Kind: KindAcquire, ID: 2},
		{Kind: KindRelease, ID: 3, Released: true},
		{Kind: KindKeepAlive, ID: 4, Expired: []uint64{5}},
		{Kind: KindKeepAlive, ID: 6, Expired: []uint64{}},
		{Kind: KindAcquire, ID: 5, Code: CodeFailedPrecondition, Message: "not the leader", Leader: "127.0.0.1:7710"},
	}
	for _, want := range resps {
		frame := AppendResponse(nil, &want)
		p, err := ReadFrame(bufio.NewReader(bytes.NewReader(frame)), nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeResponse(p)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("response %+v came back as %+v, %v", want, got, err)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	good := AppendRequest(nil, &Request{Kind: KindRelease, ID: 1, Session: 2, Token: 3})[1:]
	for _, tc := range []struct {
		name string
		p    []byte
		want string
	}{
		{"empty", nil, "kind missing"},
		{"unknown kind", []byte{9, 1}, "request kind 9"},
		{"truncated", good[:len(good)-1], "truncated"},
		{"trailing", append(bytes.Clone(good), 0), "after the last field"},
		{"bad flags", []byte{byte(KindAcquire), 1, 1, 0, 10, 2, 0}, "unknown bits"},
		{"too many ids", []byte{byte(KindKeepAlive), 1, 0xff, 0xff, 0x03}, "accepted: at most 10000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeRequest(tc.p)
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("DecodeRequest(%x) = %v, want ErrMalformed mentioning %q", tc.p, err, tc.want)
			}
		})
	}
	for _, frame := range [][]byte{{0}, {0xff, 0xff, 0xff, 0xff, 0x0f}, {5, 1, 2}} {
		if _, err := ReadFrame(bufio.NewReader(bytes.NewReader(frame)), nil); !errors.Is(err, ErrMalformed) {
			t.Errorf("ReadFrame(%x) = %v, want ErrMalformed", frame, err)
		}
	}
}

func FuzzDecodeRequest(f *testing.F) {
	f.Add(AppendRequest(nil, &Request{Kind: KindAcquire, ID: 1, Session: 2, Name: "a", TTLMillis: 10, Wait: true})[1:])
	f.Add(AppendRequest(nil, &Request{Kind: KindKeepAlive, ID: 1, Sessions: []uint64{1, 2}})[1:])
	f.Add([]byte{2, 1, 1, 1})
	f.Fuzz(func(t *testing.T, p []byte) {
		r, err := DecodeRequest(p)
		if err != nil {
			return
		}
		// What decodes must encode back to the same bytes (one encoding
		// per request, except for the flag byte's unused bits, refused).
		if again := AppendRequest(nil, &r); !bytes.Equal(again[len(again)-len(p):], p) {
			t.Fatalf("%x decoded to %+v, which encodes as %x", p, r, again)
		}
	})
}

func FuzzDecodeResponse(f *testing.F) {
	f.Add(AppendResponse(nil, &Response{Kind: KindAcquire, ID: 1, Granted: true, Token: 3})[1:])
	f.Add(AppendResponse(nil, &Response{Kind: KindRelease, ID: 1, Code: CodeFailedPrecondition, Message: "x", Leader: "y"})[1:])
	f.Fuzz(func(t *testing.T, p []byte) {
		DecodeResponse(p) // must not panic
	})
}

// TestConn: many concurrent calls over one connection to an echo server
// each get their own answer; a broken connection fails calls in flight.
func TestConn(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		magic := make([]byte, len(Magic))
		if _, err := r.Read(magic); err != nil || string(magic) != Magic {
			return
		}
		var mu sync.Mutex
		for {
			p, err := ReadFrame(r, nil)
			if err != nil {
				return
			}
			req, err := DecodeRequest(p)
			if err != nil {
				return
			}
			go func() {
				// Answer out of order: the token is the session.
				time.Sleep(time.Duration(req.Session%3) * time.Millisecond)
				mu.Lock()
				defer mu.Unlock()
				c.Write(AppendResponse(nil, &Response{Kind: req.Kind, ID: req.ID, Granted: true, Token: req.Session}))
			}()
		}
	}()
	c, err := Dial(context.Background(), ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := c.Call(context.Background(), Request{Kind: KindAcquire, Session: uint64(i + 1), Name: "a", TTLMillis: 10})
			if err != nil || r.Token != uint64(i+1) {
				t.Errorf("call %d: %+v %v", i, r, err)
			}
		}()
	}
	wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	ln.Close()
	c.nc.Close() // break it under a call
	if _, err := c.Call(ctx, Request{Kind: KindRelease, Session: 1}); err == nil {
		t.Fatal("a call on a broken connection succeeded")
	}
	c.Close()
	if !c.Broken() {
		t.Fatal("a closed connection is not Broken")
	}
}

// fakeServer accepts one connection and answers pings, and calls only
// after delay (never, if delay < 0), or nothing at all when silent.
func fakeServer(t *testing.T, silent bool, delay time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		if _, err := r.Discard(len(Magic)); err != nil {
			return
		}
		var mu sync.Mutex
		for {
			p, err := ReadFrame(r, nil)
			if err != nil {
				return
			}
			if silent {
				continue
			}
			req, err := DecodeRequest(p)
			if err != nil {
				return
			}
			go func() {
				if req.Kind != KindPing {
					if delay < 0 {
						return
					}
					time.Sleep(delay)
				}
				mu.Lock()
				defer mu.Unlock()
				c.Write(AppendResponse(nil, &Response{Kind: req.Kind, ID: req.ID, Released: true}))
			}()
		}
	}()
	return ln.Addr().String()
}

// TestHealthCheck: a node that answers nothing, not even pings (paused,
// partitioned), breaks the connection within about PingTimeout; a node
// that answers pings keeps a slow call alive.
func TestHealthCheck(t *testing.T) {
	t.Run("silent node", func(t *testing.T) {
		c, err := Dial(context.Background(), fakeServer(t, true, 0))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err = c.Call(ctx, Request{Kind: KindRelease, Session: 1})
		if !errors.Is(err, ErrClosed) || ctx.Err() != nil {
			t.Fatalf("call to a silent node = %v (ctx %v), want the connection declared dead first", err, ctx.Err())
		}
	})
	t.Run("slow but alive node", func(t *testing.T) {
		c, err := Dial(context.Background(), fakeServer(t, false, PingTimeout+PingInterval))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		r, err := c.Call(context.Background(), Request{Kind: KindRelease, Session: 1})
		if err != nil || !r.Released {
			t.Fatalf("slow call on a live connection: %+v %v", r, err)
		}
	})
}
