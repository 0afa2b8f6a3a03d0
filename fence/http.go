package fence

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/fencerlock/fencer"
)

// Header is the HTTP header that carries a request's fencing token, in
// decimal (fencer.Token.String).
const Header = "Fencing-Token"

const acceptedToken = "one " + Header + " header holding the decimal token of your lock grant, from 1 to 18446744073709551615"

// TokenFromHeader returns the fencing token in h. It returns ErrNoToken if
// h has no Fencing-Token header, and a *fencer.InvalidError (matching
// fencer.ErrInvalid) if the header is malformed or repeated: two tokens on
// one request are a client or proxy bug, not something to pick from.
func TokenFromHeader(h http.Header) (fencer.Token, error) {
	vs := h.Values(Header)
	switch len(vs) {
	case 0:
		return 0, ErrNoToken
	case 1:
	default:
		return 0, &fencer.InvalidError{Field: Header + " header", Value: vs[0] + ", " + vs[1],
			Reason: strconv.Itoa(len(vs)) + " values", Accepted: acceptedToken}
	}
	t, err := fencer.ParseToken(vs[0])
	if err != nil {
		return 0, &fencer.InvalidError{Field: Header + " header", Value: vs[0], Reason: "not a token", Accepted: acceptedToken}
	}
	return t, nil
}

type tokenKey struct{}

// ContextWithToken returns a copy of ctx carrying token, as Middleware
// passes it to the handler. It is for tests of handlers run without the
// middleware.
func ContextWithToken(ctx context.Context, token fencer.Token) context.Context {
	return context.WithValue(ctx, tokenKey{}, token)
}

// TokenFromContext returns the token Middleware accepted for the request
// whose context is ctx, and false if the request was let through without
// a token (MiddlewareOptions.AllowUnfenced) or did not pass Middleware.
func TokenFromContext(ctx context.Context) (fencer.Token, bool) {
	t, ok := ctx.Value(tokenKey{}).(fencer.Token)
	return t, ok
}

// MiddlewareOptions configure Middleware. A nil *MiddlewareOptions, or a
// zero field, means the default.
type MiddlewareOptions struct {
	// Resource returns the resource a request acts on, whose floor its
	// token is checked against. Nil means the request's URL path, so each
	// path is fenced on its own. Every request that can change or read
	// what one lock protects must map to the same resource.
	Resource func(r *http.Request) string

	// AllowUnfenced lets requests without a Fencing-Token header through
	// to the handler unchecked (TokenFromContext then reports false), for
	// a service that is adopting fencing while old clients still run.
	// Without it they get 400 Bad Request. A malformed token is refused
	// either way: it is a client bug, and ignoring it would drop the
	// protection silently.
	AllowUnfenced bool

	// Logger receives FloorStore failures, at Error level. Nil discards
	// them (the client still gets 500).
	Logger *slog.Logger
}

// Middleware returns HTTP middleware that checks every request's fencing
// token with g before calling the next handler:
//
//   - no Fencing-Token header: 400 Bad Request saying what is accepted,
//     or, with AllowUnfenced, the handler without a token;
//   - a malformed token or an invalid resource: 400 Bad Request saying
//     what was wrong and what is accepted;
//   - a stale token: 409 Conflict, with the StaleError's message (both
//     tokens) as the body;
//   - a FloorStore failure: 500 Internal Server Error;
//   - otherwise the handler, with the token in the request's context
//     (TokenFromContext).
//
// Error bodies are plain text. The check happens before the handler runs,
// so a handler that must not interleave with a newer holder's requests on
// the same resource serializes them itself (see Guard).
func Middleware(g *Guard, opts *MiddlewareOptions) func(http.Handler) http.Handler {
	var o MiddlewareOptions
	if opts != nil {
		o = *opts
	}
	if o.Resource == nil {
		o.Resource = func(r *http.Request) string { return r.URL.Path }
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			token, err := TokenFromHeader(r.Header)
			switch {
			case errors.Is(err, ErrNoToken) && o.AllowUnfenced:
				next.ServeHTTP(w, r)
				return
			case err != nil:
				WriteError(w, err)
				return
			}
			resource := o.Resource(r)
			if err := g.Check(r.Context(), resource, token); err != nil {
				WriteError(w, err)
				if StatusCode(err) == http.StatusInternalServerError && r.Context().Err() == nil {
					o.Logger.Error("fencing check failed", "resource", resource, "token", token, "err", err)
				}
				return
			}
			next.ServeHTTP(w, r.WithContext(ContextWithToken(r.Context(), token)))
		})
	}
}

// StatusCode returns the HTTP status for an error from Guard.Check or
// TokenFromHeader: 409 for a stale token, 400 for a missing or invalid
// token or resource, 500 for anything else (a store failure), 200 for nil.
func StatusCode(err error) int {
	switch {
	case err == nil:
		return http.StatusOK
	case errors.Is(err, ErrStale):
		return http.StatusConflict
	case errors.Is(err, ErrNoToken), errors.Is(err, fencer.ErrInvalid):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

// WriteError writes err from Guard.Check or TokenFromHeader as a plain-text
// response with the status StatusCode gives. A store failure's details are
// not sent to the client.
func WriteError(w http.ResponseWriter, err error) {
	code := StatusCode(err)
	msg := err.Error()
	switch {
	case errors.Is(err, ErrNoToken):
		msg = "fence: this request needs a fencing token; accepted: " + acceptedToken
	case code == http.StatusInternalServerError:
		msg = "fence: the fencing token could not be recorded, so the request was not applied; retry later"
	}
	http.Error(w, msg, code)
}
