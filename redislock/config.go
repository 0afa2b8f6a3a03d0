package redislock

import (
	"log/slog"
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
	// DefaultMinBackoff is the first fallback back-off of a waiting Acquire.
	DefaultMinBackoff = 20 * time.Millisecond
	// DefaultMaxBackoff is the longest fallback back-off of a waiting Acquire.
	DefaultMaxBackoff = time.Second
)

// Config configures a Backend. A zero field means its default, as each field
// says; only Client is required.
type Config struct {
	// Client is the connection to Redis: a *redis.Client for one server, a
	// failover client (Sentinel) or a *redis.ClusterClient. Required. The
	// Backend does not close it: whoever made it does, after closing the
	// Backend. (Open makes its own client and closes it in Close.)
	//
	// Set ContextTimeoutEnabled in the client's options: without it go-redis
	// ignores ctx deadlines on reads and writes, and a request to a server
	// that stopped answering waits for ReadTimeout (5 s by default) however
	// soon its ctx ends. New logs a warning when it can tell.
	//
	// go-redis retries a command after some network errors (MaxRetries,
	// default 3). The acquire and renew scripts are safe to retry; a
	// release retried after a reply was lost reports ErrLeaseLost although
	// the lock was released.
	Client redis.UniversalClient

	// KeyPrefix starts every key and channel: the lock name "jobs" is kept
	// at KeyPrefix+"{jobs}", its token counter at KeyPrefix+"{jobs}:token",
	// and released locks are announced on KeyPrefix+"{jobs}:released".
	// It must not contain '{' or '}', which would change the Cluster hash
	// tag. Zero means DefaultKeyPrefix ("fencer:"). Clients that must
	// exclude each other have to use the same prefix.
	KeyPrefix string

	// MinBackoff and MaxBackoff bound the fallback back-off of a waiting
	// Acquire. A waiter is normally woken by the release's publication,
	// within about one round trip; the back-off, which starts at MinBackoff,
	// doubles up to MaxBackoff, and is jittered by up to half, is for
	// publications that are lost (a pub/sub reconnect) and for a holder that
	// dies without releasing (then the waiter also tries again as soon as
	// the holder's TTL has run out). A zero MinBackoff means
	// DefaultMinBackoff (20 ms), or MaxBackoff if that is smaller; a zero
	// MaxBackoff means DefaultMaxBackoff (1 s), or MinBackoff if that is
	// larger. MinBackoff must not be above MaxBackoff.
	MinBackoff time.Duration
	MaxBackoff time.Duration

	// Logger receives a warning about a client that ignores ctx deadlines
	// and debug messages about the pub/sub connection (lost, reconnecting).
	// Nil discards them.
	Logger *slog.Logger
}

// withDefaults returns cfg with its zero fields set to their defaults, or an
// *fencer.InvalidError naming the field that is wrong.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.Client == nil {
		return cfg, &fencer.InvalidError{Field: "redislock config Client", Value: "nil",
			Reason: "a Redis client is required", Accepted: "a redis.UniversalClient (*redis.Client, *redis.ClusterClient, a failover client)"}
	}
	if cfg.KeyPrefix == "" {
		cfg.KeyPrefix = DefaultKeyPrefix
	}
	if strings.ContainsAny(cfg.KeyPrefix, "{}") {
		return cfg, &fencer.InvalidError{Field: "redislock key prefix", Value: cfg.KeyPrefix,
			Reason: "it contains '{' or '}', which would change the keys' Cluster hash tag", Accepted: "any string without '{' and '}', e.g. \"fencer:\""}
	}
	def := backoff.Bounds{Min: DefaultMinBackoff, Max: DefaultMaxBackoff}
	bo, err := backoff.Bounds{Min: cfg.MinBackoff, Max: cfg.MaxBackoff}.Fill("redislock", def)
	if err != nil {
		return cfg, err
	}
	cfg.MinBackoff, cfg.MaxBackoff = bo.Min, bo.Max
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg, nil
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
