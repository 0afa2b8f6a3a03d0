package fence

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/fencerlock/fencer"
)

// MaxResourceLen is the longest resource name, in bytes.
const MaxResourceLen = 1024

const acceptedResource = "1 to 1024 bytes of UTF-8 without NUL bytes"

// ValidateResource returns an *fencer.InvalidError if resource is not a
// resource name every FloorStore can keep: 1 to MaxResourceLen bytes of
// valid UTF-8 without NUL bytes (which a PostgreSQL text column cannot
// hold).
func ValidateResource(resource string) error {
	bad := func(reason string) error {
		return &fencer.InvalidError{Field: "resource", Value: resource, Reason: reason, Accepted: acceptedResource}
	}
	switch {
	case resource == "":
		return bad("it is empty")
	case len(resource) > MaxResourceLen:
		return bad("it is " + strconv.Itoa(len(resource)) + " bytes long")
	case !utf8.ValidString(resource):
		return bad("it is not valid UTF-8")
	case strings.IndexByte(resource, 0) >= 0:
		return bad("it has a NUL byte at byte " + strconv.Itoa(strings.IndexByte(resource, 0)))
	}
	return nil
}

// validateToken refuses NoToken, which no lock grant carries.
func validateToken(token fencer.Token) error {
	if token == fencer.NoToken {
		return &fencer.InvalidError{Field: "token", Value: "0", Reason: "0 means no token",
			Accepted: "the token of a lock grant, from 1 to 18446744073709551615"}
	}
	return nil
}

// FloorStore keeps, for each resource, its floor: the highest token a
// request on it has been accepted with. It is the durable half of a Guard.
//
// A Guard calls Load and Raise from the goroutines of the requests it
// checks: any number of calls, on the same or different resources, run at
// the same time, and an implementation must be safe for that. Raise must be
// atomic per resource (two raises of one resource behave as if one ran
// after the other) and should not make raises of different resources wait
// for one another on a single lock, apart from sharing a group commit.
//
// The Guard validates resource names (ValidateResource) and refuses token 0
// before calling a FloorStore. Floors only ever rise; a resource never seen
// has floor 0.
//
// MemoryStore, FileStore and fencepg.Store implement it; package fencetest
// is the conformance suite every implementation passes.
type FloorStore interface {
	// Load returns the floor of resource, or 0 if it has none.
	Load(ctx context.Context, resource string) (fencer.Token, error)

	// Raise accepts token if it is at least the floor of resource, and then
	// makes it the floor; it returns the floor after the call and whether
	// the token was accepted. An accepted raise must be durable, as far as
	// the store is durable at all, before Raise returns: the caller
	// acknowledges its request on the strength of it. A refused token
	// returns the higher floor, accepted false and a nil error.
	//
	// If ctx is done before the outcome is durable, Raise returns an error
	// wrapping ctx.Err(); the raise may or may not take effect.
	Raise(ctx context.Context, resource string, token fencer.Token) (floor fencer.Token, accepted bool, err error)
}

// Guard is the token check a storage service runs on every request that
// acts on a resource under a lock: it accepts a token at least as high as
// the highest token the resource has seen (equal: the same holder's further
// requests), remembers it, and refuses a lower one with a *StaleError.
//
// Check reads as well as writes. If only writes raised the floor, a newer
// holder (token 34) could read a value, a stale holder's write (token 33,
// still above the floor set by earlier writes) could land, and then 34's
// write, computed from what it read, would overwrite 33's: a lost update,
// although every write carried a token. A read with 34 raises the floor to
// 34 first, so 33 is refused.
//
// A Guard is safe for concurrent use. It only serializes requests of one
// resource inside its FloorStore's raise; the caller's own work on the
// resource (the write the token guards) is not covered: a service that must
// apply "check, then write" atomically, so that two requests with the same
// token cannot interleave with a newer one, holds its own per-resource lock
// around both, or uses a store that does both in one transaction (see
// fencepg.Check).
type Guard struct {
	store FloorStore
}

// NewGuard returns a Guard keeping its floors in store; a nil store means a
// new MemoryStore, whose floors are lost when the process exits. The caller
// still owns store and closes it after the last Check.
func NewGuard(store FloorStore) *Guard {
	if store == nil {
		store = NewMemoryStore()
	}
	return &Guard{store: store}
}

// Check accepts a request on resource carrying token, or refuses it. It
// returns nil once the token is the resource's floor (durably, as far as
// the store is); the caller may then act on the request. It returns:
//
//   - a *StaleError (matching ErrStale) if a higher token has been seen:
//     refuse the request (HTTP 409);
//   - a *fencer.InvalidError (matching fencer.ErrInvalid) for an invalid
//     resource name or token 0 (HTTP 400);
//   - any other error if the store failed; the token may or may not have
//     been recorded, and the request must not be acknowledged.
func (g *Guard) Check(ctx context.Context, resource string, token fencer.Token) error {
	if err := ValidateResource(resource); err != nil {
		return err
	}
	if err := validateToken(token); err != nil {
		return err
	}
	floor, ok, err := g.store.Raise(ctx, resource, token)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
			err = errors.Join(err, cerr)
		}
		return fmt.Errorf("fence: record token %d for resource %q: %w", token, resource, err)
	}
	if !ok {
		return &StaleError{Resource: resource, Token: token, Floor: floor}
	}
	return nil
}

// Floor returns the highest token resource has seen, or 0.
func (g *Guard) Floor(ctx context.Context, resource string) (fencer.Token, error) {
	if err := ValidateResource(resource); err != nil {
		return 0, err
	}
	f, err := g.store.Load(ctx, resource)
	if err != nil {
		return 0, fmt.Errorf("fence: load the floor of resource %q: %w", resource, err)
	}
	return f, nil
}
