package redislock

import (
	"github.com/redis/go-redis/v9"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/internal/redisurl"
)

const acceptedURL = "redis://[user:password@]host:port[/db] with a port from 1 to 65535 and a database number from 0, " +
	"no query options, e.g. redis://127.0.0.1:6380/0 or redis://app:secret@redis.internal:6380"

// ParseURL parses a redis:// URL into options for redis.NewClient:
//
//	redis://[user:password@]host:port[/db]
//
// host is a name, an IPv4 address or a bracketed IPv6 address; the port is
// required (there is no default, so a typo cannot silently reach another
// server); db is a database number, 0 when absent. User and password are
// percent-decoded; a password without a user (redis://:secret@host:port)
// authenticates with the legacy requirepass. Query options, fragments,
// rediss:// (TLS) and unix sockets are not accepted: build a redis.Client
// yourself and pass it to New for those.
//
// The options have ContextTimeoutEnabled set, so that a request gives up
// when its ctx does; everything else is go-redis's default.
//
// An error is an *fencer.InvalidError that says what was wrong and what is
// accepted; it never contains the password.
func ParseURL(rawURL string) (*redis.Options, error) {
	p, reason := redisurl.Split(rawURL, "redis", false)
	if reason != "" {
		return nil, &fencer.InvalidError{Field: "redis URL", Value: redisurl.Redact(rawURL), Reason: reason, Accepted: acceptedURL}
	}
	// ContextTimeoutEnabled: go-redis applies ctx deadlines to reads and
	// writes only when asked, and a lock must give up when its ctx does.
	return &redis.Options{Addr: p.Addrs[0], Username: p.User, Password: p.Password, DB: p.DB, ContextTimeoutEnabled: true}, nil
}
