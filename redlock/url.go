package redlock

import (
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/internal/redisurl"
)

const acceptedURL = "redlock://[user:password@]host1:port1,host2:port2,host3:port3[/db]: an odd number (3 or more) of distinct " +
	"host:port pairs with ports from 1 to 65535, no query options, e.g. redlock://10.0.0.1:6379,10.0.0.2:6379,10.0.0.3:6379"

// ParseURL parses a redlock:// URL into options for one redis.NewClient per
// node:
//
//	redlock://[user:password@]host1:port1,host2:port2,host3:port3[/db]
//
// It needs an odd number of distinct nodes, at least 3, each host:port with
// an explicit port; hosts are names, IPv4 addresses or bracketed IPv6
// addresses. The optional user and password (percent-decoded) and database
// number apply to every node. Query options, fragments and TLS are not
// accepted: build the redis.Clients yourself and pass them to New for those.
//
// The options have ContextTimeoutEnabled set, so that the node timeout
// bounds each request; everything else is go-redis's default.
//
// An error is an *fencer.InvalidError that says what was wrong and what is
// accepted; it never contains the password.
func ParseURL(rawURL string) ([]*redis.Options, error) {
	bad := func(reason string) error {
		return &fencer.InvalidError{Field: "redlock URL", Value: redisurl.Redact(rawURL), Reason: reason, Accepted: acceptedURL}
	}
	p, reason := redisurl.Split(rawURL, "redlock", true)
	if reason != "" {
		return nil, bad(reason)
	}
	seen := make(map[string]int, len(p.Addrs))
	opts := make([]*redis.Options, 0, len(p.Addrs))
	for i, addr := range p.Addrs {
		norm := strings.ToLower(addr)
		if j, dup := seen[norm]; dup {
			return nil, bad("nodes " + strconv.Itoa(j+1) + " and " + strconv.Itoa(i+1) + " are both " + addr + "; a node counted twice would fake a majority")
		}
		seen[norm] = i
		// ContextTimeoutEnabled: go-redis applies ctx deadlines (the node
		// timeout) to reads and writes only when asked.
		opts = append(opts, &redis.Options{Addr: addr, Username: p.User, Password: p.Password, DB: p.DB, ContextTimeoutEnabled: true})
	}
	if n := len(opts); n < 3 || n%2 == 0 {
		return nil, bad("it names " + strconv.Itoa(n) + " nodes; Redlock needs an odd number, at least 3")
	}
	return opts, nil
}
