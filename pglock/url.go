package pglock

import (
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fencerlock/fencer"
)

const acceptedURL = "postgres://[user[:password]@]host[:port][/database][?param=value&...] or the same with postgresql://, " +
	"as pgx and libpq accept it, e.g. postgres://app:secret@db.internal:5432/app?sslmode=verify-full"

// poolConfig parses a postgres:// or postgresql:// URL with pgx's own
// parser into a pool configuration. An error is an *fencer.InvalidError
// that says what was wrong and what is accepted; it never contains the
// password.
//
// Unless the URL says otherwise, the pool's sessions get the
// application_name "fencer-pglock" (so that operators can tell its
// connections in pg_stat_activity) and READ COMMITTED as their default
// isolation level, which the statements expect whatever the role's or
// database's default is.
func poolConfig(rawURL string) (*pgxpool.Config, error) {
	bad := func(reason string) error {
		return &fencer.InvalidError{Field: "postgres URL", Value: redactURL(rawURL), Reason: reason, Accepted: acceptedURL}
	}
	scheme, _, ok := strings.Cut(rawURL, "://")
	switch {
	case !ok && strings.Contains(rawURL, "="):
		return nil, bad("it does not start with postgres:// or postgresql://; keyword=value connection strings are not accepted here (build a pgxpool.Pool and use New)")
	case !ok:
		return nil, bad("it does not start with postgres:// or postgresql://")
	case scheme != "postgres" && scheme != "postgresql":
		return nil, bad("the scheme is " + strconv.Quote(scheme) + ", not postgres or postgresql")
	}
	cfg, err := pgxpool.ParseConfig(rawURL)
	if err != nil {
		return nil, bad(parseReason(err))
	}
	rp := cfg.ConnConfig.RuntimeParams
	if _, ok := rp["application_name"]; !ok {
		rp["application_name"] = "fencer-pglock"
	}
	if _, ok := rp["default_transaction_isolation"]; !ok {
		rp["default_transaction_isolation"] = "read committed"
	}
	return cfg, nil
}

// parseReason returns what pgx says is wrong with a connection string,
// without the string itself, which pgx quotes (redacted) in front.
func parseReason(err error) string {
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, "cannot parse `"); ok {
		if _, reason, ok := strings.Cut(rest, "`: "); ok {
			return reason
		}
	}
	return msg
}

// redactURL replaces the password of a URL-like string with "xxxxx", so
// that errors can quote what they were given. The last '@' ends the user
// information, as in pgx.
func redactURL(s string) string {
	i := strings.Index(s, "://")
	if i < 0 {
		return s
	}
	start := i + 3
	end := len(s)
	if j := strings.IndexAny(s[start:], "/?#"); j >= 0 {
		// A password may hold '/', '?' or '#' unencoded only before the
		// last '@'; look for that '@' in the whole rest.
		end = start + j
		if at := strings.LastIndexByte(s[start:], '@'); at >= 0 && start+at > end {
			end = len(s)
		}
	}
	at := strings.LastIndexByte(s[start:end], '@')
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
