package netproxy

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	mathrand "math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestPassThroughLarge sends 16 MiB through the proxy and back on several
// connections at once and checks every byte.
func TestPassThroughLarge(t *testing.T) {
	echo := startEcho(t)
	p := newProxy(t, echo.addr(), &Options{MaxBuffered: 256 << 10})
	const size, conns = 16 << 20, 3
	var wg sync.WaitGroup
	for i := range conns {
		c := dial(t, p.Addr())
		data := make([]byte, size)
		rand.Read(data)
		want := sha256.Sum256(data)
		wg.Go(func() {
			if _, err := c.Write(data); err != nil {
				t.Errorf("conn %d: write: %v", i, err)
			}
			if err := c.CloseWrite(); err != nil {
				t.Errorf("conn %d: close write: %v", i, err)
			}
		})
		wg.Go(func() {
			h := sha256.New()
			n, err := io.Copy(h, c) // until the echo server's FIN
			if err != nil || n != size || !bytes.Equal(h.Sum(nil), want[:]) {
				t.Errorf("conn %d: got %d bytes (%v), hash match %v; want %d bytes back intact", i, n, err, bytes.Equal(h.Sum(nil), want[:]), size)
			}
		})
	}
	wg.Wait()
	waitFor(t, "connections to close", func() bool { return p.Stats().Open == 0 })
	s := p.Stats()
	if s.Up.Forwarded != conns*size || s.Down.Forwarded != conns*size || s.Up.Buffered != 0 {
		t.Fatalf("stats %+v; want %d bytes forwarded each way, nothing buffered", s, conns*size)
	}
}

func rtt(t *testing.T, c net.Conn) time.Duration {
	t.Helper()
	start := time.Now()
	write(t, c, "x")
	mustRead(t, c, "x")
	return time.Since(start)
}

func TestDelay(t *testing.T) {
	echo := startEcho(t)
	p := newProxy(t, echo.addr(), &Options{Seed: 1})
	c := dial(t, p.Addr())
	base := rtt(t, c)

	const d = 50 * time.Millisecond
	if err := p.Set(Delay(Up, d, 0)); err != nil {
		t.Fatal(err)
	}
	if got := rtt(t, c); got < d {
		t.Fatalf("round trip with %v delay up took %v", d, got)
	}
	if err := p.Set(Delay(Both, d, 0)); err != nil {
		t.Fatal(err)
	}
	if got := rtt(t, c); got < 2*d {
		t.Fatalf("round trip with %v delay both ways took %v", d, got)
	}

	// With jitter larger than the delay, chunks would overtake each other
	// if order were not kept.
	if err := p.Set(Delay(Both, time.Millisecond, 20*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	for i := range 200 {
		s := fmt.Sprintf("<%d>", i)
		want.WriteString(s)
		write(t, c, s)
		time.Sleep(100 * time.Microsecond) // separate chunks
	}
	mustRead(t, c, want.String())

	if err := p.Heal(); err != nil {
		t.Fatal(err)
	}
	best := time.Hour
	for range 5 {
		best = min(best, rtt(t, c))
	}
	if best >= d {
		t.Fatalf("healed round trip %v (before the delay: %v); want well under %v", best, base, d)
	}
}

func TestBlackholeHangsThenHeals(t *testing.T) {
	echo := startEcho(t)
	p := newProxy(t, echo.addr(), nil)
	talker, quiet := dial(t, p.Addr()), dial(t, p.Addr())
	write(t, talker, "a")
	mustRead(t, talker, "a")
	write(t, quiet, "b")
	mustRead(t, quiet, "b")

	if err := p.Set(Blackhole(Both)); err != nil {
		t.Fatal(err)
	}
	write(t, talker, "lost")
	mustTimeOut(t, talker, 200*time.Millisecond)
	// A connection opened during the blackhole reaches the target but
	// nothing gets through.
	during := dial(t, p.Addr())
	write(t, during, "c")
	mustTimeOut(t, during, 100*time.Millisecond)
	waitFor(t, "the bytes to be dropped", func() bool { return p.Stats().Up.Dropped == int64(len("lost")+len("c")) })

	if err := p.Heal(); err != nil {
		t.Fatal(err)
	}
	// The connections that lost bytes are reset rather than handed a
	// stream with a hole; the quiet one carries on.
	for _, c := range []net.Conn{talker, during} {
		if _, err := readN(c, 1, 5*time.Second); !isReset(err) {
			t.Fatalf("read after heal on a connection that lost bytes: %v; want a connection reset", err)
		}
	}
	write(t, quiet, "d")
	mustRead(t, quiet, "d")
	if !echoes(t, p.Addr(), 5*time.Second) {
		t.Fatal("a new connection after the heal does not echo")
	}
}

// TestBlackholeLosesDelayedBytes: bytes waiting in a delay when the
// blackhole starts are lost with it.
func TestBlackholeLosesDelayedBytes(t *testing.T) {
	echo := startEcho(t)
	p := newProxy(t, echo.addr(), nil)
	c := dial(t, p.Addr())
	if err := p.Set(Delay(Up, time.Hour, 0)); err != nil {
		t.Fatal(err)
	}
	write(t, c, "in flight")
	waitFor(t, "bytes to be buffered", func() bool { return p.Stats().Up.Buffered == 9 })
	if err := p.Set(Blackhole(Up)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "buffered bytes to be dropped", func() bool { s := p.Stats(); return s.Up.Dropped == 9 && s.Up.Buffered == 0 })
}

func TestCutParksNewConnections(t *testing.T) {
	echo := startEcho(t)
	p := newProxy(t, echo.addr(), nil)
	open := dial(t, p.Addr())
	write(t, open, "a")
	mustRead(t, open, "a")

	if err := p.Set(DropNew()); err != nil {
		t.Fatal(err)
	}
	parked := dial(t, p.Addr()) // the kernel accepts it
	write(t, parked, "early")
	mustTimeOut(t, parked, 200*time.Millisecond)
	write(t, open, "b") // open connections are not affected by DropNew
	mustRead(t, open, "b")
	waitFor(t, "one parked connection", func() bool { return p.Stats().Parked == 1 })

	if err := p.Heal(); err != nil {
		t.Fatal(err)
	}
	// Like a retransmitted SYN: the parked connection goes through, with
	// what was sent on it.
	mustRead(t, parked, "early")
}

func TestReset(t *testing.T) {
	echo := startEcho(t)
	p := newProxy(t, echo.addr(), nil)
	c := dial(t, p.Addr())
	write(t, c, "a")
	mustRead(t, c, "a")

	if err := p.Set(Reset()); err != nil {
		t.Fatal(err)
	}
	if _, err := readN(c, 1, 5*time.Second); !isReset(err) {
		t.Fatalf("read on an open connection after Reset: %v; want a connection reset", err)
	}
	// New connections: the kernel accepts, then the proxy resets.
	if err := dialAndRead(p.Addr()); !isReset(err) {
		t.Fatalf("a new connection under Reset: %v; want a connection reset", err)
	}

	if err := p.Heal(); err != nil {
		t.Fatal(err)
	}
	if !echoes(t, p.Addr(), 5*time.Second) {
		t.Fatal("a new connection after the heal does not echo")
	}

	// ResetConns resets what is open now, and nothing after.
	c2 := dial(t, p.Addr())
	write(t, c2, "x")
	mustRead(t, c2, "x")
	if err := p.ResetConns(); err != nil {
		t.Fatal(err)
	}
	if _, err := readN(c2, 1, 5*time.Second); !isReset(err) {
		t.Fatalf("read after ResetConns: %v; want a connection reset", err)
	}
	if !echoes(t, p.Addr(), 5*time.Second) {
		t.Fatal("a new connection after ResetConns does not echo")
	}
}

// TestHoldThenRelease is the delayed write request: it is held in the
// network, the target sees nothing, and it arrives whole and in order when
// released.
func TestHoldThenRelease(t *testing.T) {
	got := make(chan string, 100)
	target := startServer(t, func(c net.Conn) {
		b := make([]byte, 1024)
		for {
			n, err := c.Read(b)
			if n > 0 {
				got <- string(b[:n])
			}
			if err != nil {
				got <- "EOF"
				return
			}
		}
	})
	p := newProxy(t, target.addr(), nil)
	c := dial(t, p.Addr())
	write(t, c, "before;")
	if s := <-got; s != "before;" {
		t.Fatalf("target got %q; want before;", s)
	}

	if err := p.Set(Hold(Up)); err != nil {
		t.Fatal(err)
	}
	want := ""
	for i := range 50 {
		s := fmt.Sprintf("write token=%d;", i)
		want += s
		write(t, c, s)
	}
	if err := c.CloseWrite(); err != nil { // the FIN is held too
		t.Fatal(err)
	}
	waitFor(t, "the writes to be held", func() bool { return p.Stats().Up.Buffered == int64(len(want)) })
	select {
	case s := <-got:
		t.Fatalf("target got %q while the link was held", s)
	case <-time.After(100 * time.Millisecond):
	}

	if err := p.Heal(); err != nil {
		t.Fatal(err)
	}
	var all string
	for !strings.HasSuffix(all, "EOF") {
		select {
		case s := <-got:
			all += s
		case <-time.After(5 * time.Second):
			t.Fatalf("target got %q after the release; want %q then EOF", all, want)
		}
	}
	if all != want+"EOF" {
		t.Fatalf("target got %q after the release; want %q then EOF", all, want)
	}
}

// TestHoldDown holds the replies only: requests arrive, answers wait.
func TestHoldDown(t *testing.T) {
	echo := startEcho(t)
	p := newProxy(t, echo.addr(), nil)
	c := dial(t, p.Addr())
	if err := p.Set(Hold(Down)); err != nil {
		t.Fatal(err)
	}
	write(t, c, "reply")
	waitFor(t, "the reply to be held", func() bool { s := p.Stats(); return s.Up.Forwarded == 5 && s.Down.Buffered == 5 })
	mustTimeOut(t, c, 100*time.Millisecond)
	if err := p.Heal(); err != nil {
		t.Fatal(err)
	}
	mustRead(t, c, "reply")
}

// TestHoldBackpressure: a held direction stops reading at MaxBuffered, so
// the sender blocks instead of the proxy growing without bound; the release
// delivers everything.
func TestHoldBackpressure(t *testing.T) {
	echo := startEcho(t)
	const limit = 64 << 10
	p := newProxy(t, echo.addr(), &Options{MaxBuffered: limit})
	c := dial(t, p.Addr())
	if err := p.Set(Hold(Up)); err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<20) // 16 MiB, far more than kernel buffers
	var wg sync.WaitGroup
	wg.Go(func() {
		if _, err := c.Write(data); err != nil {
			t.Errorf("write: %v", err)
		}
		_ = c.CloseWrite()
	})
	waitFor(t, "the hold buffer to fill", func() bool { return p.Stats().Up.Buffered > 0 })
	time.Sleep(50 * time.Millisecond)
	if b := p.Stats().Up.Buffered; b > limit+readSize {
		t.Fatalf("held %d bytes; want at most MaxBuffered %d plus one read", b, limit)
	}
	if err := p.Heal(); err != nil {
		t.Fatal(err)
	}
	back, err := io.ReadAll(c)
	wg.Wait()
	if err != nil || !bytes.Equal(back, data) {
		t.Fatalf("read back %d bytes (%v); want the %d sent", len(back), err, len(data))
	}
}

func TestTargetDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	p := newProxy(t, addr, nil) // while ln holds the port, so the proxy gets another
	ln.Close()                  // nothing listens there now
	if err := dialAndRead(p.Addr()); !isReset(err) {
		t.Fatalf("a connection through a proxy whose target is down: %v; want a connection reset", err)
	}
	waitFor(t, "the failure to be counted", func() bool { s := p.Stats(); return s.Reset == 1 && s.Open == 0 })
}

func TestInvalid(t *testing.T) {
	echo := startEcho(t)
	if _, err := New(echo.addr(), &Options{ListenAddr: "0.0.0.0:0"}); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("listen on 0.0.0.0: %v; want an error about loopback", err)
	}
	if _, err := New("no-port", nil); err == nil {
		t.Fatal("target without a port: no error")
	}
	p := newProxy(t, echo.addr(), nil)
	for _, f := range []Fault{
		{Up: Rule{Mode: ModeHold, Delay: time.Second}},
		{Down: Rule{Mode: ModeDelay, Delay: -time.Second}},
		{Up: Rule{Mode: 9}},
		{Conns: 7},
	} {
		if err := p.Set(f); err == nil {
			t.Errorf("Set(%v): no error", f)
		}
	}
	if p.Fault() != (Fault{}) {
		t.Fatalf("an invalid Set changed the fault to %v", p.Fault())
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Set(Fault{}); err != ErrClosed {
		t.Fatalf("Set after Close: %v; want ErrClosed", err)
	}
}

func TestFaultString(t *testing.T) {
	for _, tc := range []struct {
		f    Fault
		want string
	}{
		{Fault{}, "healthy"},
		{Cut(), "up=blackhole down=blackhole conns=drop"},
		{Delay(Down, time.Second, 10*time.Millisecond), "up=pass down=delay 1s+10ms conns=accept"},
		{Hold(Up), "up=hold down=pass conns=accept"},
		{Reset(), "up=pass down=pass conns=reset"},
	} {
		if got := tc.f.String(); got != tc.want {
			t.Errorf("String() = %q; want %q", got, tc.want)
		}
	}
}

// TestCloseStopsEverything closes a proxy with connections in every state
// and checks that their clients see the end. TestMain checks that no
// goroutine is left.
func TestCloseStopsEverything(t *testing.T) {
	echo := startEcho(t)
	p, err := New(echo.addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	held := dial(t, p.Addr())
	delayed := dial(t, p.Addr())
	mustWork := dial(t, p.Addr())
	write(t, mustWork, "ok")
	mustRead(t, mustWork, "ok")
	if err := p.Set(Fault{Up: Rule{Mode: ModeHold}, Down: Rule{Mode: ModeDelay, Delay: time.Hour}, Conns: ConnsDrop}); err != nil {
		t.Fatal(err)
	}
	write(t, held, "held")
	write(t, delayed, "x")
	parked := dial(t, p.Addr())
	waitFor(t, "a parked connection", func() bool { return p.Stats().Parked == 1 })

	done := make(chan error)
	go func() { done <- p.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	for _, c := range []net.Conn{held, delayed, mustWork, parked} {
		if _, err := readN(c, 1, 5*time.Second); err == nil || !(isReset(err) || err == io.EOF) {
			t.Fatalf("read after Close: %v; want the connection ended", err)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestChaosNeverCorrupts streams data through a proxy whose fault changes
// every few milliseconds by a seeded schedule, and checks the promise of
// the package: every connection gets back a correct prefix of what it
// sent, all of it unless it was reset; never a wrong or missing byte.
func TestChaosNeverCorrupts(t *testing.T) {
	echo := startEcho(t)
	p := newProxy(t, echo.addr(), &Options{Seed: 7, MaxBuffered: 32 << 10})
	faults := []Fault{
		{},
		Delay(Both, time.Millisecond, 3*time.Millisecond),
		Hold(Up),
		Hold(Down),
		Blackhole(Up),
		Blackhole(Down),
		{Up: Rule{Mode: ModeDelay, Delay: 2 * time.Millisecond}, Down: Rule{Mode: ModeHold}},
		DropNew(),
	}
	rng := mathrand.New(mathrand.NewPCG(1, 2))

	const conns, size = 6, 2 << 20
	stream := make([]byte, size)
	for i := range stream {
		stream[i] = byte(i * 7 / 3)
	}
	type result struct {
		got int
		err error
	}
	results := make([]result, conns)
	var wg sync.WaitGroup
	for i := range conns {
		c := dial(t, p.Addr())
		wg.Go(func() {
			for off := 0; off < size; off += 4096 {
				if _, err := c.Write(stream[off : off+4096]); err != nil {
					return // reset: the reader sees it too
				}
			}
			_ = c.CloseWrite()
		})
		wg.Go(func() {
			buf := make([]byte, 64<<10)
			n := 0
			for {
				m, err := c.Read(buf)
				if !bytes.Equal(buf[:m], stream[n:n+m]) {
					results[i] = result{n, fmt.Errorf("bytes %d..%d differ from what was sent", n, n+m)}
					return
				}
				n += m
				if err != nil {
					if err == io.EOF {
						err = nil
					}
					results[i] = result{n, err}
					return
				}
			}
		})
	}
	stop := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(stop) {
		if err := p.Set(faults[rng.IntN(len(faults))]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(1+rng.IntN(5)) * time.Millisecond)
	}
	if err := p.Heal(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	complete := 0
	for i, r := range results {
		switch {
		case r.err == nil && r.got == size:
			complete++
		case r.err != nil && isReset(r.err):
		default:
			t.Errorf("conn %d: got %d of %d bytes back, then %v; want all of them, or a reset", i, r.got, size, r.err)
		}
	}
	waitFor(t, "every connection to end and its buffers to empty", func() bool {
		s := p.Stats()
		return s.Open == 0 && s.Up.Buffered == 0 && s.Down.Buffered == 0
	})
	s := p.Stats()
	if s.Reset != int64(conns-complete) {
		t.Errorf("stats count %d resets; %d connections were reset", s.Reset, conns-complete)
	}
	t.Logf("%d of %d connections complete, the others reset; stats %+v", complete, conns, s)
}
