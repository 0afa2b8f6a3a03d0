// Package backends opens a fencer.Backend from a URL, the form `fencer run
// --backend` and FENCER_BACKEND take:
//
//	fencer://host:port[,host:port...]              the fencer lock server (correctness)
//	postgres://[user[:password]@]host[:port][/database][?param=value...]  PostgreSQL lock table (correctness; postgresql:// too)
//	redis://[user:password@]host:port[/db]      single Redis instance (efficiency)
//	redlock://host1:port1,host2:port2,host3:port3  Redlock over N masters (efficiency, no token)
//
// The scheme picks the backend; each backend package documents the rest of
// its URL.
package backends

import (
	"context"
	"sort"
	"strings"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/client"
	"github.com/fencerlock/fencer/pglock"
	"github.com/fencerlock/fencer/redislock"
	"github.com/fencerlock/fencer/redlock"
)

type opener func(ctx context.Context, url string) (fencer.Backend, error)

func openers() map[string]opener {
	return map[string]opener{
		"fencer": func(_ context.Context, u string) (fencer.Backend, error) {
			return client.Open(u)
		},
		"postgres": func(ctx context.Context, u string) (fencer.Backend, error) {
			return pglock.Open(ctx, u)
		},
		"postgresql": func(ctx context.Context, u string) (fencer.Backend, error) {
			return pglock.Open(ctx, u)
		},
		"redis": func(_ context.Context, u string) (fencer.Backend, error) {
			return redislock.Open(u)
		},
		"redlock": func(_ context.Context, u string) (fencer.Backend, error) {
			return redlock.Open(u)
		},
	}
}

// DefaultURL is the backend when none is given: the embedded default
// server that `fencer server` starts with no flags.
const DefaultURL = "fencer://127.0.0.1:7700"

// Schemes returns the URL schemes Open accepts, sorted.
func Schemes() []string {
	var s []string
	for k := range openers() {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}

// Open returns the backend the URL names. Errors about the URL itself are
// *fencer.InvalidError; connection errors are reported by the first call
// that needs the connection, not by Open.
func Open(ctx context.Context, url string) (fencer.Backend, error) {
	scheme, _, ok := strings.Cut(url, "://")
	open, known := openers()[scheme]
	if !ok || !known {
		return nil, &fencer.InvalidError{Field: "backend URL", Value: url,
			Reason:   "unknown scheme",
			Accepted: strings.Join(Schemes(), "://..., ") + "://..."}
	}
	return open(ctx, url)
}
