// Package rpcclient calls a fencer server cluster: it finds the leader,
// follows the leader address a follower answers with, moves on to another
// endpoint when one does not answer, and retries until the caller's context
// ends. The Go client backend, the server's join and the CLI use it.
package rpcclient

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/fencerlock/fencer/internal/api/fencerv1"
	"github.com/fencerlock/fencer/internal/api/fencerv1/fencerv1connect"
	"github.com/fencerlock/fencer/internal/backoff"
)

// LeaderHeader is the header in which a follower names the leader's client
// address (server.LeaderHeader).
const LeaderHeader = "Fencer-Leader"

// Config configures a Conn.
type Config struct {
	// Endpoints are client API addresses (host:port) of cluster members.
	// At least one is required.
	Endpoints []string
	// HTTPClient carries the calls. Nil means a client speaking
	// unencrypted HTTP/2 to the endpoints.
	HTTPClient *http.Client
	// MaxBackoff caps the pause between retries when no endpoint answers.
	// Default 500ms.
	MaxBackoff time.Duration
}

// Conn is a connection to a cluster. It is safe for concurrent use. Close
// releases its idle connections.
type Conn struct {
	cfg     Config
	hc      *http.Client
	ownHC   bool
	mu      sync.Mutex
	clients map[string]fencerv1connect.LockServiceClient
	leader  string // the endpoint believed to lead; "" if unknown
	next    int    // the endpoint to try next when the leader is unknown
}

// New returns a Conn to the cluster at cfg.Endpoints.
func New(cfg Config) *Conn {
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 500 * time.Millisecond
	}
	c := &Conn{cfg: cfg, hc: cfg.HTTPClient, clients: make(map[string]fencerv1connect.LockServiceClient)}
	if c.hc == nil {
		c.hc, c.ownHC = NewHTTPClient(), true
	}
	return c
}

// NewHTTPClient returns an HTTP client that speaks unencrypted HTTP/2 (h2c),
// as the server does.
func NewHTTPClient() *http.Client {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 15 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     90 * time.Second,
	}
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetUnencryptedHTTP2(true)
	tr.HTTP2 = &http.HTTP2Config{PingTimeout: 2 * time.Second, SendPingTimeout: 5 * time.Second}
	return &http.Client{Transport: tr}
}

// Close closes idle connections of a Conn's own HTTP client.
func (c *Conn) Close() {
	if c.ownHC {
		c.hc.CloseIdleConnections()
	}
}

func (c *Conn) client(addr string) fencerv1connect.LockServiceClient {
	c.mu.Lock()
	defer c.mu.Unlock()
	cl, ok := c.clients[addr]
	if !ok {
		cl = fencerv1connect.NewLockServiceClient(c.hc, "http://"+addr)
		c.clients[addr] = cl
	}
	return cl
}

// target returns the endpoint to call: the leader if known, else the next
// endpoint in turn.
func (c *Conn) target() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.leader != "" {
		return c.leader
	}
	a := c.cfg.Endpoints[c.next%len(c.cfg.Endpoints)]
	c.next++
	return a
}

func (c *Conn) setLeader(addr string) {
	c.mu.Lock()
	c.leader = addr
	c.mu.Unlock()
}

// forget drops addr as the leader after it failed to answer as one.
func (c *Conn) forget(addr string) {
	c.mu.Lock()
	if c.leader == addr {
		c.leader = ""
	}
	c.mu.Unlock()
}

// Leader returns the endpoint currently believed to lead, or "".
func (c *Conn) Leader() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leader
}

// Call runs fn against the leader and returns its result. It follows
// redirects and retries on unavailable nodes until ctx ends; any other
// error is returned at once. fn must be safe to retry.
func Call[T any](ctx context.Context, c *Conn, fn func(context.Context, fencerv1connect.LockServiceClient) (T, error)) (T, error) {
	var zero T
	wait := 10 * time.Millisecond
	redirects := 0
	for {
		addr := c.target()
		out, err := fn(ctx, c.client(addr))
		if err == nil {
			c.setLeader(addr)
			return out, nil
		}
		if ctx.Err() != nil {
			return zero, errors.Join(err, ctx.Err())
		}
		var ce *connect.Error
		if !errors.As(err, &ce) {
			return zero, err
		}
		switch ce.Code() {
		case connect.CodeFailedPrecondition:
			leader := ce.Meta().Get(LeaderHeader)
			if leader == "" {
				return zero, err
			}
			c.setLeader(leader)
			if redirects++; redirects < 3 {
				continue // a fresh leader address: go there at once
			}
		case connect.CodeUnavailable, connect.CodeUnknown, connect.CodeInternal:
			// Unknown and Internal cover a connection torn mid-call.
			c.forget(addr)
		default:
			return zero, err
		}
		sleep := backoff.Jitter(wait)
		wait = min(wait*2, c.cfg.MaxBackoff)
		select {
		case <-ctx.Done():
			return zero, errors.Join(err, ctx.Err())
		case <-time.After(sleep):
		}
	}
}

// IsPermanent reports whether err will not go away by retrying: bad input
// or a refusal, as opposed to an unavailable or redirecting node.
func IsPermanent(err error) bool {
	switch connect.CodeOf(err) {
	case connect.CodeInvalidArgument, connect.CodeNotFound, connect.CodeAlreadyExists, connect.CodePermissionDenied, connect.CodeUnimplemented:
		return true
	}
	return false
}

func unary[Req, Resp any](call func(context.Context, *connect.Request[Req]) (*connect.Response[Resp], error), ctx context.Context, req *Req) (*Resp, error) {
	r, err := call(ctx, connect.NewRequest(req))
	if err != nil {
		return nil, err
	}
	return r.Msg, nil
}

// Acquire calls LockService.Acquire on the leader.
func (c *Conn) Acquire(ctx context.Context, req *fencerv1.AcquireRequest) (*fencerv1.AcquireResponse, error) {
	return Call(ctx, c, func(ctx context.Context, cl fencerv1connect.LockServiceClient) (*fencerv1.AcquireResponse, error) {
		return unary(cl.Acquire, ctx, req)
	})
}

// Release calls LockService.Release on the leader.
func (c *Conn) Release(ctx context.Context, req *fencerv1.ReleaseRequest) (*fencerv1.ReleaseResponse, error) {
	return Call(ctx, c, func(ctx context.Context, cl fencerv1connect.LockServiceClient) (*fencerv1.ReleaseResponse, error) {
		return unary(cl.Release, ctx, req)
	})
}

// KeepAlive calls LockService.KeepAlive on the leader.
func (c *Conn) KeepAlive(ctx context.Context, req *fencerv1.KeepAliveRequest) (*fencerv1.KeepAliveResponse, error) {
	return Call(ctx, c, func(ctx context.Context, cl fencerv1connect.LockServiceClient) (*fencerv1.KeepAliveResponse, error) {
		return unary(cl.KeepAlive, ctx, req)
	})
}

// Status calls LockService.Status on the leader.
func (c *Conn) Status(ctx context.Context, req *fencerv1.StatusRequest) (*fencerv1.StatusResponse, error) {
	return Call(ctx, c, func(ctx context.Context, cl fencerv1connect.LockServiceClient) (*fencerv1.StatusResponse, error) {
		return unary(cl.Status, ctx, req)
	})
}

// Members calls LockService.Members on the leader.
func (c *Conn) Members(ctx context.Context, req *fencerv1.MembersRequest) (*fencerv1.MembersResponse, error) {
	return Call(ctx, c, func(ctx context.Context, cl fencerv1connect.LockServiceClient) (*fencerv1.MembersResponse, error) {
		return unary(cl.Members, ctx, req)
	})
}

// Join calls LockService.Join on the leader.
func (c *Conn) Join(ctx context.Context, req *fencerv1.JoinRequest) (*fencerv1.JoinResponse, error) {
	return Call(ctx, c, func(ctx context.Context, cl fencerv1connect.LockServiceClient) (*fencerv1.JoinResponse, error) {
		return unary(cl.Join, ctx, req)
	})
}

// Remove calls LockService.Remove on the leader.
func (c *Conn) Remove(ctx context.Context, req *fencerv1.RemoveRequest) (*fencerv1.RemoveResponse, error) {
	return Call(ctx, c, func(ctx context.Context, cl fencerv1connect.LockServiceClient) (*fencerv1.RemoveResponse, error) {
		return unary(cl.Remove, ctx, req)
	})
}
