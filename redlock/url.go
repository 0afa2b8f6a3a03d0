package redlock

import (
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/fencerlock/fencer"
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
		return &fencer.InvalidError{Field: "redlock URL", Value: redactURL(rawURL), Reason: reason, Accepted: acceptedURL}
	}
	rest, ok := strings.CutPrefix(rawURL, "redlock://")
	if !ok {
		if scheme, _, found := strings.Cut(rawURL, "://"); found {
			return nil, bad("the scheme is " + strconv.Quote(scheme) + ", not redlock")
		}
		return nil, bad("it does not start with redlock://")
	}
	var user, pass string
	// The last '@' ends the user information, so that a password with an
	// unencoded '/' or '@' is still taken whole (and never quoted).
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		var reason string
		if user, pass, reason = parseUserinfo(rest[:at]); reason != "" {
			return nil, bad(reason)
		}
		rest = rest[at+1:]
	}
	if strings.ContainsAny(rest, "?#") {
		return nil, bad("it has a query or a fragment; no options are accepted")
	}
	hosts, path, hasPath := strings.Cut(rest, "/")
	db := 0
	if hasPath {
		var ok bool
		if db, ok = parseDecimal(path); !ok {
			return nil, bad("the database " + strconv.Quote(path) + " is not a number from 0 to 2147483647")
		}
	}
	if hosts == "" {
		return nil, bad("it names no nodes")
	}
	parts := strings.Split(hosts, ",")
	seen := make(map[string]int, len(parts))
	opts := make([]*redis.Options, 0, len(parts))
	for i, hp := range parts {
		addr, reason := parseHostPort(hp)
		if reason != "" {
			return nil, bad("node " + strconv.Itoa(i+1) + ": " + reason)
		}
		norm := strings.ToLower(addr)
		if j, dup := seen[norm]; dup {
			return nil, bad("nodes " + strconv.Itoa(j+1) + " and " + strconv.Itoa(i+1) + " are both " + addr + "; a node counted twice would fake a majority")
		}
		seen[norm] = i
		// ContextTimeoutEnabled: go-redis applies ctx deadlines (the node
		// timeout) to reads and writes only when asked.
		opts = append(opts, &redis.Options{Addr: addr, Username: user, Password: pass, DB: db, ContextTimeoutEnabled: true})
	}
	if n := len(opts); n < 3 || n%2 == 0 {
		return nil, bad("it names " + strconv.Itoa(n) + " nodes; Redlock needs an odd number, at least 3")
	}
	return opts, nil
}

// parseUserinfo splits and decodes user:password. It returns a reason for
// bad input.
func parseUserinfo(s string) (user, pass, reason string) {
	u, p, ok := strings.Cut(s, ":")
	if !ok {
		return "", "", "it has a user but no password; write user:password@ or :password@"
	}
	var err error
	if user, err = url.PathUnescape(u); err != nil {
		return "", "", "the user is not percent-encoded correctly"
	}
	if pass, err = url.PathUnescape(p); err != nil {
		return "", "", "the password is not percent-encoded correctly"
	}
	if pass == "" {
		return "", "", "the password is empty"
	}
	return user, pass, ""
}

// parseHostPort checks host:port and returns it, or a reason it is bad.
func parseHostPort(s string) (addr, reason string) {
	if s == "" {
		return "", "the address is empty"
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", "the address " + strconv.Quote(s) + " is not host:port"
	}
	if host == "" {
		return "", "the address " + strconv.Quote(s) + " has no host"
	}
	for _, r := range host {
		if r <= ' ' || r == 0x7f || strings.ContainsRune("/@,?#[]", r) {
			return "", "the host " + strconv.Quote(host) + " has a character that is not allowed in a host name"
		}
	}
	if port == "" {
		return "", "the address " + strconv.Quote(s) + " has no port"
	}
	p, ok := parseDecimal(port)
	if !ok || p < 1 || p > 65535 {
		return "", "the port " + strconv.Quote(port) + " is not a number from 1 to 65535"
	}
	return net.JoinHostPort(host, strconv.Itoa(p)), ""
}

// parseDecimal parses a non-negative decimal int32 without sign or leading
// zeros.
func parseDecimal(s string) (int, bool) {
	if s == "" || len(s) > 1 && s[0] == '0' {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 32)
	return int(n), err == nil
}

// redactURL replaces the password of a URL-like string with "xxxxx", so
// that errors can quote what they were given.
func redactURL(s string) string {
	i := strings.Index(s, "://")
	if i < 0 {
		return s
	}
	start := i + 3
	at := strings.LastIndexByte(s[start:], '@')
	if at < 0 {
		return s
	}
	at += start
	colon := strings.IndexByte(s[start:at], ':')
	if colon < 0 {
		return s
	}
	return s[:start+colon+1] + "xxxxx" + s[at:]
}
