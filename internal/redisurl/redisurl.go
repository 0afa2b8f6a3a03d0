// Package redisurl splits the URLs of the Redis-based backends,
//
//	redis://[user:password@]host:port[/db]
//	redlock://[user:password@]host1:port1,host2:port2,...[/db]
//
// into their parts, strictly: explicit ports, no query options, and
// reasons for refusal that never quote the password.
package redisurl

import (
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Parts are the pieces of a URL.
type Parts struct {
	User, Password string   // percent-decoded; both empty when absent
	Addrs          []string // host:port, in the URL's order
	DB             int      // database number; 0 when absent
}

// Split parses scheme://[user:password@]host:port[/db], or, with several,
// a comma-separated list of host:port. On bad input it returns a reason,
// for the caller's error message, that says what is wrong; the reason never
// contains the password.
func Split(rawURL, scheme string, several bool) (Parts, string) {
	var p Parts
	rest, ok := strings.CutPrefix(rawURL, scheme+"://")
	if !ok {
		if s, _, found := strings.Cut(rawURL, "://"); found {
			return p, "the scheme is " + strconv.Quote(s) + ", not " + scheme
		}
		return p, "it does not start with " + scheme + "://"
	}
	// The last '@' ends the user information, so that a password with an
	// unencoded '/' or '@' is still taken whole (and never quoted).
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		var reason string
		if p.User, p.Password, reason = splitUserinfo(rest[:at]); reason != "" {
			return p, reason
		}
		rest = rest[at+1:]
	}
	if strings.ContainsAny(rest, "?#") {
		return p, "it has a query or a fragment; no options are accepted"
	}
	hosts, path, hasPath := strings.Cut(rest, "/")
	if hasPath {
		db, ok := decimal(path)
		if !ok {
			return p, "the database " + strconv.Quote(path) + " is not a number from 0 to 2147483647"
		}
		p.DB = db
	}
	if !several {
		if hosts == "" {
			return p, "it has no host:port"
		}
		addr, reason := hostPort(hosts)
		if reason == "" {
			p.Addrs = []string{addr}
		}
		return p, reason
	}
	if hosts == "" {
		return p, "it names no nodes"
	}
	for i, hp := range strings.Split(hosts, ",") {
		addr, reason := hostPort(hp)
		if reason != "" {
			return p, "node " + strconv.Itoa(i+1) + ": " + reason
		}
		p.Addrs = append(p.Addrs, addr)
	}
	return p, ""
}

// splitUserinfo splits and decodes user:password.
func splitUserinfo(s string) (user, pass, reason string) {
	u, pw, ok := strings.Cut(s, ":")
	if !ok {
		return "", "", "it has a user but no password; write user:password@ or :password@"
	}
	var err error
	if user, err = url.PathUnescape(u); err != nil {
		return "", "", "the user is not percent-encoded correctly"
	}
	if pass, err = url.PathUnescape(pw); err != nil {
		return "", "", "the password is not percent-encoded correctly"
	}
	if pass == "" {
		return "", "", "the password is empty"
	}
	return user, pass, ""
}

// hostPort checks host:port and returns it normalized.
func hostPort(s string) (addr, reason string) {
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
	p, ok := decimal(port)
	if !ok || p < 1 || p > 65535 {
		return "", "the port " + strconv.Quote(port) + " is not a number from 1 to 65535"
	}
	return net.JoinHostPort(host, strconv.Itoa(p)), ""
}

// decimal parses a non-negative decimal int32 without sign or leading
// zeros.
func decimal(s string) (int, bool) {
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

// Redact replaces the password of a URL-like string with "xxxxx", so that
// errors can quote what they were given.
func Redact(s string) string {
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
