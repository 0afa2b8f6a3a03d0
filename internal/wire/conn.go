package wire

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Health checking: while calls are in flight and nothing has arrived for
// PingInterval, the Conn pings; if the ping is not answered within
// PingTimeout, the Conn is broken and its calls fail, so that a dead,
// paused or partitioned node costs at most that long.
const (
	PingInterval = 500 * time.Millisecond
	PingTimeout  = 2 * time.Second
)

// ErrClosed is returned by calls on a closed or broken Conn.
var ErrClosed = errors.New("wire: connection closed")

// Conn is the client side of one connection. Many calls may be in flight
// at once; their frames are written together when they queue up together.
// It is safe for concurrent use. Close it when done; a Conn whose
// connection broke fails every call and must be replaced.
type Conn struct {
	nc net.Conn

	mu     sync.Mutex
	nextID uint64
	calls  map[uint64]chan Response
	out    []byte // frames not yet written
	err    error  // why the Conn is closed; nil while open

	lastRecv time.Time // when the last frame arrived; guarded by mu
	pingSent time.Time // when the outstanding ping was sent; zero if none

	wake chan struct{}
	done chan struct{} // closed when every goroutine has returned
}

// Dial connects to a fencer server's client address over TCP.
func Dial(ctx context.Context, addr string) (*Conn, error) {
	var d net.Dialer
	return DialWith(ctx, d.DialContext, addr)
}

// DialWith connects to addr through dial, which a fault injector or a
// custom network can supply.
func DialWith(ctx context.Context, dial func(ctx context.Context, network, addr string) (net.Conn, error), addr string) (*Conn, error) {
	nc, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if _, err := nc.Write([]byte(Magic)); err != nil {
		nc.Close()
		return nil, err
	}
	c := &Conn{nc: nc, calls: make(map[uint64]chan Response), wake: make(chan struct{}, 1), done: make(chan struct{}), lastRecv: time.Now()}
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); c.readLoop() }()
	go func() { defer wg.Done(); c.writeLoop() }()
	go func() { defer wg.Done(); c.healthLoop() }()
	go func() { wg.Wait(); close(c.done) }()
	return c, nil
}

// healthLoop pings a connection whose calls get no answers, and breaks it
// if the ping gets none either.
func (c *Conn) healthLoop() {
	t := time.NewTicker(PingInterval / 2)
	defer t.Stop()
	for range t.C {
		c.mu.Lock()
		if c.err != nil {
			c.mu.Unlock()
			return
		}
		now := time.Now()
		var dead bool
		switch {
		case !c.pingSent.IsZero():
			dead = now.Sub(c.pingSent) > PingTimeout
		case len(c.calls) > 0 && now.Sub(c.lastRecv) > PingInterval:
			c.pingSent = now
			c.nextID++
			c.out = AppendRequest(c.out, &Request{Kind: KindPing, ID: c.nextID})
			select {
			case c.wake <- struct{}{}:
			default:
			}
		}
		c.mu.Unlock()
		if dead {
			c.fail(fmt.Errorf("no answer to a ping for %v", PingTimeout))
			return
		}
	}
}

// Call sends req (its ID is set by Call) and waits for the response, ctx,
// or the connection's end.
func (c *Conn) Call(ctx context.Context, req Request) (Response, error) {
	ch := make(chan Response, 1)
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return Response{}, err
	}
	c.nextID++
	req.ID = c.nextID
	c.calls[req.ID] = ch
	c.out = AppendRequest(c.out, &req)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	select {
	case r, ok := <-ch:
		if !ok {
			return Response{}, c.closedErr()
		}
		return r, nil
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.calls, req.ID)
		c.mu.Unlock()
		return Response{}, ctx.Err()
	}
}

func (c *Conn) closedErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Broken reports whether the Conn can no longer carry calls.
func (c *Conn) Broken() bool { return c.closedErr() != nil }

// fail closes the Conn for reason and ends every call in flight.
func (c *Conn) fail(reason error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	c.err = fmt.Errorf("%w: %v", ErrClosed, reason)
	c.nc.Close()
	for id, ch := range c.calls {
		delete(c.calls, id)
		close(ch)
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Close closes the connection and waits for its goroutines.
func (c *Conn) Close() error {
	c.fail(errors.New("closed by the client"))
	<-c.done
	return nil
}

func (c *Conn) writeLoop() {
	var buf []byte
	for range c.wake {
		c.mu.Lock()
		if c.err != nil {
			c.mu.Unlock()
			return
		}
		buf, c.out = c.out, buf[:0]
		c.mu.Unlock()
		if len(buf) == 0 {
			continue
		}
		if _, err := c.nc.Write(buf); err != nil {
			c.fail(err)
			return
		}
	}
}

func (c *Conn) readLoop() {
	r := bufio.NewReaderSize(c.nc, 16<<10)
	var buf []byte
	for {
		p, err := ReadFrame(r, buf)
		if err != nil {
			c.fail(err)
			return
		}
		buf = p
		resp, err := DecodeResponse(p)
		if err != nil {
			c.fail(err)
			return
		}
		c.mu.Lock()
		c.lastRecv = time.Now()
		if resp.Kind == KindPing {
			c.pingSent = time.Time{}
		}
		ch, ok := c.calls[resp.ID]
		delete(c.calls, resp.ID)
		c.mu.Unlock()
		if ok {
			ch <- resp
		}
	}
}
