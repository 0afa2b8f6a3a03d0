package traffic

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fencerlock/fencer"
)

// naive is the lock of DESIGN.md's scenario 8, as too many code bases
// write it: SET key value NX PX ttl with a value every client may share
// (a host name, a coarse timestamp, a constant), and a release that
// deletes the key if it holds that value. When two clients' values
// collide, one releases the other's lock. It issues no token. It is a
// fencer.Backend so that the worker runs it like any other backend; it is
// only for the checker's demonstration.
type naive struct {
	c     *redis.Client
	key   func(name string) string
	value string
}

const (
	naiveRenew   = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0`
	naiveRelease = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`
)

// openNaive opens naive-redis://host:port?value=V.
func openNaive(raw string) (*naive, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != NaiveScheme || u.Host == "" {
		return nil, &fencer.InvalidError{Field: "backend URL", Value: raw, Reason: "not a naive-redis URL",
			Accepted: NaiveScheme + "://host:port?value=V"}
	}
	value := u.Query().Get("value")
	if value == "" {
		return nil, &fencer.InvalidError{Field: "backend URL", Value: raw, Reason: "no value",
			Accepted: NaiveScheme + "://host:port?value=V, V the fixed lock value every client uses"}
	}
	c := redis.NewClient(&redis.Options{Addr: u.Host, ContextTimeoutEnabled: true})
	return &naive{c: c, value: value, key: func(name string) string { return "naive:{" + name + "}" }}, nil
}

func (n *naive) Info() fencer.BackendInfo {
	return fencer.BackendInfo{Kind: NaiveScheme, Guarantee: fencer.Efficiency, Tokens: false}
}

func (n *naive) Acquire(ctx context.Context, req fencer.AcquireRequest) (fencer.Grant, error) {
	for {
		sent := time.Now()
		ok, err := n.c.SetNX(ctx, n.key(req.Name), n.value, req.TTL).Result()
		switch {
		case err == nil && ok:
			return fencer.Grant{Name: req.Name, TTL: req.TTL, Sent: sent, Handle: n.value}, nil
		case err != nil && (!req.Wait || ctx.Err() != nil):
			return fencer.Grant{}, fmt.Errorf("naive-redis: acquire %q: %w", req.Name, err)
		case err == nil && !req.Wait:
			return fencer.Grant{}, fmt.Errorf("%w: naive-redis lock %q", fencer.ErrLocked, req.Name)
		}
		select {
		case <-ctx.Done():
			return fencer.Grant{}, fmt.Errorf("naive-redis: waiting for %q: %w", req.Name, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (n *naive) Renew(ctx context.Context, g fencer.Grant) (fencer.Grant, error) {
	sent := time.Now()
	r, err := n.c.Eval(ctx, naiveRenew, []string{n.key(g.Name)}, n.value, g.TTL.Milliseconds()).Int64()
	if err != nil {
		return fencer.Grant{}, fmt.Errorf("naive-redis: renew %q: %w", g.Name, err)
	}
	if r == 0 {
		return fencer.Grant{}, fmt.Errorf("%w: naive-redis lock %q does not hold the value", fencer.ErrLeaseLost, g.Name)
	}
	g.Sent = sent
	return g, nil
}

func (n *naive) Release(ctx context.Context, g fencer.Grant) error {
	r, err := n.c.Eval(ctx, naiveRelease, []string{n.key(g.Name)}, n.value).Int64()
	if err != nil {
		return fmt.Errorf("naive-redis: release %q: %w", g.Name, err)
	}
	if r == 0 {
		return fmt.Errorf("%w: naive-redis lock %q does not hold the value", fencer.ErrLeaseLost, g.Name)
	}
	return nil
}

func (n *naive) Close() error { return n.c.Close() }

var _ fencer.Backend = (*naive)(nil)
