package netproxy

import (
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind: every
// proxy, server and client a test starts must be stopped by its cleanup.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// server is a TCP server on a loopback port that runs handle for every
// connection. Its cleanup closes the listener and every connection and waits
// for all its goroutines.
type server struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func startServer(t testing.TB, handle func(net.Conn)) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{ln: ln, conns: map[net.Conn]struct{}{}}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[c] = struct{}{}
			s.mu.Unlock()
			s.wg.Go(func() {
				defer func() {
					c.Close()
					s.mu.Lock()
					delete(s.conns, c)
					s.mu.Unlock()
				}()
				handle(c)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *server) addr() string { return s.ln.Addr().String() }

// startEcho starts a server that sends back what it gets and closes its
// side after the client's EOF.
func startEcho(t testing.TB) *server {
	return startServer(t, func(c net.Conn) {
		_, _ = io.Copy(c, c)
		_ = c.(*net.TCPConn).CloseWrite()
	})
}

func newProxy(t testing.TB, target string, opts *Options) *Proxy {
	t.Helper()
	p, err := New(target, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("close proxy: %v", err)
		}
	})
	return p
}

func dial(t testing.TB, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

func write(t testing.TB, c net.Conn, s string) {
	t.Helper()
	if _, err := c.Write([]byte(s)); err != nil {
		t.Fatalf("write %q: %v", s, err)
	}
}

// readN reads n bytes within timeout.
func readN(c net.Conn, n int, timeout time.Duration) (string, error) {
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	defer c.SetReadDeadline(time.Time{})
	b := make([]byte, n)
	got, err := io.ReadFull(c, b)
	return string(b[:got]), err
}

func mustRead(t testing.TB, c net.Conn, want string) {
	t.Helper()
	got, err := readN(c, len(want), 5*time.Second)
	if err != nil || got != want {
		t.Fatalf("read %q, %v; want %q", got, err, want)
	}
}

// mustTimeOut checks that nothing arrives on c for a while.
func mustTimeOut(t testing.TB, c net.Conn, wait time.Duration) {
	t.Helper()
	got, err := readN(c, 1, wait)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read %q, %v; want a timeout: the connection should hang", got, err)
	}
}

// echoes reports whether a new connection to addr echoes a byte within
// timeout. A connection that hangs reports false.
func echoes(t testing.TB, addr string, timeout time.Duration) bool {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return false
	}
	defer c.Close()
	if _, err := c.Write([]byte("?")); err != nil {
		return false
	}
	got, err := readN(c, 1, timeout)
	return err == nil && got == "?"
}

// waitFor polls cond until it is true or 5 s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// isReset reports whether err is what a reset connection gives.
func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// dialAndRead connects to addr and reads a byte. A connection the proxy
// resets right after accepting it can fail either way: in connect, if the
// RST arrives before the dialler has checked the socket, or in the read.
func dialAndRead(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = readN(c, 1, 5*time.Second)
	return err
}
