package redlock

import (
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/internal/backoff"
)

// Defaults for the zero fields of Config.
const (
	// DefaultKeyPrefix starts every key and channel the backend uses.
	DefaultKeyPrefix = "fencer:"
	// DefaultMinBackoff is the first retry delay of a waiting Acquire.
	DefaultMinBackoff = 20 * time.Millisecond
	// DefaultMaxBackoff is the longest retry delay of a waiting Acquire.
	DefaultMaxBackoff = time.Second
	// MinNodeTimeout and MaxNodeTimeout bound the default per-node timeout,
	// TTL/20.
	MinNodeTimeout = 2 * time.Millisecond
	MaxNodeTimeout = 500 * time.Millisecond
)

// Config configures a Backend. A zero field means its default, as each field
// says; only Clients is required.
type Config struct {
	// Clients are the Redis masters, one client each: an odd number, at
	// least 3. They must be independent (not replicas of one another, not
	// shards of one Cluster): Redlock's majority is only worth something if
	// the nodes fail independently. The Backend does not close them;
	// whoever made them does, after closing the Backend. (Open makes its
	// own clients and closes them in Close.)
	//
	// Set ContextTimeoutEnabled in each client's options: without it
	// go-redis ignores ctx deadlines on reads and writes, so a request to a
	// node that stopped answering keeps its goroutine (and Close) waiting
	// for ReadTimeout (5 s by default); the Backend stops waiting for it at
	// the node timeout either way. New logs a warning when it can tell.
	Clients []redis.UniversalClient

	// KeyPrefix starts every key and channel: the lock name "jobs" is kept
	// at KeyPrefix+"{jobs}" on every node, and released locks are announced
	// on KeyPrefix+"{jobs}:released". It must not contain '{' or '}'. Zero
	// means DefaultKeyPrefix ("fencer:"). Clients that must exclude each
	// other have to use the same prefix.
	KeyPrefix string

	// NodeTimeout bounds the wait for one node's reply in every acquire,
	// renewal and release, so that a dead or paused node costs that long
	// and no more. It must be small compared with the TTL: time spent
	// waiting comes off the lease's validity (TTL − elapsed − drift). Zero
	// means TTL/20 of each request, at least MinNodeTimeout (2 ms) and at
	// most MaxNodeTimeout (500 ms). The Redlock description suggests 5 to
	// 50 ms for a 10 s lease; on a loaded host a healthy Redis can take
	// longer than that to answer, and a timeout that fires on healthy nodes
	// turns load into lost quorums, so the cap allows 5% of the TTL up to
	// half a second. A request that has to open a connection first (the first
	// one, or the first after the node came back) spends a few more round
	// trips inside the same timeout. Must not be negative.
	NodeTimeout time.Duration

	// MinBackoff and MaxBackoff bound the retry delay of a waiting Acquire
	// whose attempt failed: it starts at MinBackoff, doubles up to
	// MaxBackoff, and is jittered by up to half, so that competing clients
	// fall out of step (a split vote is Redlock's way to fail; after one,
	// the delay starts again from MinBackoff). A waiter is also woken when
	// a release is published on the nodes, and tries again when the
	// holder's TTL runs out. A zero MinBackoff means
	// DefaultMinBackoff (20 ms), or MaxBackoff if that is smaller; a zero
	// MaxBackoff means DefaultMaxBackoff (1 s), or MinBackoff if that is
	// larger. MinBackoff must not be above MaxBackoff.
	MinBackoff time.Duration
	MaxBackoff time.Duration

	// Logger receives a warning about clients that ignore ctx deadlines and
	// debug messages about the nodes' pub/sub connections (lost,
	// reconnecting). Nil discards them.
	Logger *slog.Logger

	// AfterReplies is a test hook, for fault injection only: when set, every
	// acquire attempt calls it on the acquiring goroutine after the nodes'
	// replies have been collected and before the validity check (TTL −
	// elapsed − drift). The checker (`fencer check`) pauses the client in it
	// to reproduce a process pause while the acquire replies are in flight.
	// Nil, the default, calls nothing. Production code must leave it nil.
	AfterReplies func()
}

// withDefaults returns cfg with its zero fields set to their defaults, or an
// *fencer.InvalidError naming the field that is wrong.
func (cfg Config) withDefaults() (Config, error) {
	n := len(cfg.Clients)
	if n < 3 || n%2 == 0 {
		return cfg, &fencer.InvalidError{Field: "redlock node count", Value: strconv.Itoa(n),
			Reason: "Redlock needs an odd number of nodes, at least 3", Accepted: "3, 5, 7, ... independent Redis masters"}
	}
	for i, c := range cfg.Clients {
		if c == nil {
			return cfg, &fencer.InvalidError{Field: "redlock config Clients", Value: "nil at index " + strconv.Itoa(i),
				Reason: "every node needs a client", Accepted: "one redis.UniversalClient per Redis master"}
		}
	}
	if cfg.KeyPrefix == "" {
		cfg.KeyPrefix = DefaultKeyPrefix
	}
	if strings.ContainsAny(cfg.KeyPrefix, "{}") {
		return cfg, &fencer.InvalidError{Field: "redlock key prefix", Value: cfg.KeyPrefix,
			Reason: "it contains '{' or '}', which would change the keys' Cluster hash tag", Accepted: "any string without '{' and '}', e.g. \"fencer:\""}
	}
	if cfg.NodeTimeout < 0 {
		return cfg, &fencer.InvalidError{Field: "redlock NodeTimeout", Value: cfg.NodeTimeout.String(),
			Reason: "it is negative", Accepted: "0 (TTL/20, from 2ms to 500ms) or a positive duration well below the TTL"}
	}
	def := backoff.Bounds{Min: DefaultMinBackoff, Max: DefaultMaxBackoff}
	bo, err := backoff.Bounds{Min: cfg.MinBackoff, Max: cfg.MaxBackoff}.Fill("redlock", def)
	if err != nil {
		return cfg, err
	}
	cfg.MinBackoff, cfg.MaxBackoff = bo.Min, bo.Max
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg, nil
}

// nodeTimeout returns the per-node timeout for a request with this TTL.
func (b *Backend) nodeTimeout(ttl time.Duration) time.Duration {
	if b.fixedTimeout > 0 {
		return b.fixedTimeout
	}
	return min(max(ttl/20, MinNodeTimeout), MaxNodeTimeout)
}

// ignoresCtxDeadlines reports whether c is a go-redis client that is known
// not to apply ctx deadlines to its reads and writes.
func ignoresCtxDeadlines(c redis.UniversalClient) bool {
	switch c := c.(type) {
	case *redis.Client:
		return !c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		return !c.Options().ContextTimeoutEnabled
	}
	return false
}
