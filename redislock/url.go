package redislock

import (
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/fencerlock/fencer"
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
	bad := func(reason string) error {
		return &fencer.InvalidError{Field: "redis URL", Value: redactURL(rawURL), Reason: reason, Accepted: acceptedURL}
	}
	rest, ok := strings.CutPrefix(rawURL, "redis://")
	if !ok {
		if scheme, _, found := strings.Cut(rawURL, "://"); found {
			return nil, bad("the scheme is " + strconv.Quote(scheme) + ", not redis")
		}
		return nil, bad("it does not start with redis://")
	}
	// ContextTimeoutEnabled: go-redis applies ctx deadlines to reads and
	// writes only when asked, and a lock must give up when its ctx does.
	opts := &redis.Options{ContextTimeoutEnabled: true}
	// The last '@' ends the user information, so that a password with an
	// unencoded '/' or '@' is still taken whole (and never quoted).
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		user, pass, reason := parseUserinfo(rest[:at])
		if reason != "" {
			return nil, bad(reason)
		}
		opts.Username, opts.Password = user, pass
		rest = rest[at+1:]
	}
	if strings.ContainsAny(rest, "?#") {
		return nil, bad("it has a query or a fragment; no options are accepted")
	}
	hostport, path, hasPath := strings.Cut(rest, "/")
	addr, reason := parseHostPort(hostport)
	if reason != "" {
		return nil, bad(reason)
	}
	opts.Addr = addr
	if hasPath {
		db, ok := parseDecimal(path)
		if !ok {
			return nil, bad("the database " + strconv.Quote(path) + " is not a number from 0 to 2147483647")
		}
		opts.DB = db
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
		return "", "it has no host:port"
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
