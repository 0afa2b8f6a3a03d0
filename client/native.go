package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/internal/backoff"
	"github.com/fencerlock/fencer/internal/wire"
)

// cluster carries calls to the leader over one native-protocol connection,
// following the leader across elections: a follower's answer names the
// leader, and a node that does not answer makes the next endpoint the
// target.
type cluster struct {
	endpoints []string
	dial      func(ctx context.Context, network, addr string) (net.Conn, error) // nil: TCP

	mu     sync.Mutex
	conn   *wire.Conn
	target string // address of conn, or of the next dial
	next   int    // endpoint to try when no leader is known
	closed bool
	// shunned holds endpoints that failed recently, until when: a paused
	// node accepts connections and answers nothing, so trying it again at
	// once would cost another ping timeout.
	shunned map[string]time.Time
}

// shunFor is how long a failed endpoint is skipped, unless every endpoint
// failed.
const shunFor = 3 * time.Second

// pick returns the next endpoint in turn that is not shunned, or the next
// in turn if all are.
func (c *cluster) pick() string {
	now := time.Now()
	for range c.endpoints {
		a := c.endpoints[c.next%len(c.endpoints)]
		c.next++
		if now.After(c.shunned[a]) {
			return a
		}
	}
	a := c.endpoints[c.next%len(c.endpoints)]
	c.next++
	return a
}

const dialTimeout = 2 * time.Second

// get returns the connection to the current target, dialing it if needed.
func (c *cluster) get(ctx context.Context) (*wire.Conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, fencer.ErrClosed
	}
	if c.conn != nil && !c.conn.Broken() {
		return c.conn, nil
	}
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
	if c.target == "" {
		c.target = c.pick()
	}
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	dial := c.dial
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	conn, err := wire.DialWith(dctx, dial, c.target)
	if err != nil {
		c.shun(c.target)
		c.target = ""
		return nil, err
	}
	c.conn = conn
	return conn, nil
}

// moveTo makes addr the target, dropping conn if it is the current one;
// with failed, the current target is shunned for a while.
func (c *cluster) moveTo(conn *wire.Conn, addr string, failed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if failed && c.target != "" {
		c.shun(c.target)
	}
	if c.conn == conn && conn != nil {
		conn.Close()
		c.conn = nil
	}
	c.target = addr
}

func (c *cluster) shun(addr string) {
	if c.shunned == nil {
		c.shunned = make(map[string]time.Time)
	}
	c.shunned[addr] = time.Now().Add(shunFor)
}

func (c *cluster) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

// call sends req to the leader and returns a response with CodeOK, or an
// error: the response's own for codes that retrying cannot change, or
// ctx's. Requests must be safe to retry.
func (c *cluster) call(ctx context.Context, req wire.Request) (wire.Response, error) {
	resp, _, err := c.callRetried(ctx, req)
	return resp, err
}

// callRetried is call that also reports whether the request was sent more
// than once, so an earlier attempt may have taken effect unseen.
func (c *cluster) callRetried(ctx context.Context, req wire.Request) (resp wire.Response, retried bool, err error) {
	wait := 10 * time.Millisecond
	redirects := 0
	for attempt := 0; ; attempt++ {
		retried = attempt > 0
		var conn *wire.Conn
		conn, err = c.get(ctx)
		if err == nil {
			resp, err = conn.Call(ctx, req)
		}
		switch {
		case errors.Is(err, fencer.ErrClosed):
			return wire.Response{}, retried, err
		case err != nil:
			// Unreachable, or the connection broke: try the next node.
			c.moveTo(conn, "", true)
		case resp.Code == wire.CodeOK:
			return resp, retried, nil
		case resp.Code == wire.CodeFailedPrecondition && resp.Leader != "":
			c.moveTo(conn, resp.Leader, false)
			if redirects++; redirects < 3 {
				continue
			}
			err = errors.New(resp.Message)
		case resp.Code == wire.CodeUnavailable:
			c.moveTo(conn, "", false)
			err = errors.New(resp.Message)
		default:
			return resp, retried, callError(resp)
		}
		if ctx.Err() != nil {
			return wire.Response{}, retried, errors.Join(err, ctx.Err())
		}
		select {
		case <-ctx.Done():
			return wire.Response{}, retried, errors.Join(err, ctx.Err())
		case <-time.After(backoff.Jitter(wait)):
		}
		wait = min(wait*2, 500*time.Millisecond)
	}
}

// callError turns a refusal into an error the fencer.Client understands.
func callError(resp wire.Response) error {
	switch resp.Code {
	case wire.CodeInvalidArgument:
		return &fencer.InvalidError{Field: "request", Value: resp.Message, Reason: "refused by the server"}
	case wire.CodeAborted, wire.CodeNotFound:
		return fmt.Errorf("%w: %s", fencer.ErrLeaseLost, resp.Message)
	case wire.CodeCanceled:
		return fmt.Errorf("%s: %w", resp.Message, context.Canceled)
	case wire.CodeDeadlineExceeded:
		return fmt.Errorf("%s: %w", resp.Message, context.DeadlineExceeded)
	}
	return fmt.Errorf("fencer server: %s (code %d)", resp.Message, resp.Code)
}
