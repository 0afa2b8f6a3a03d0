package fence

import (
	"errors"
	"fmt"

	"github.com/fencerlock/fencer"
)

var (
	// ErrStale is matched (with errors.Is) by every *StaleError: a request
	// whose token is lower than one the resource has already seen.
	ErrStale = errors.New("fence: stale fencing token")

	// ErrNoToken is returned by TokenFromHeader for a request without a
	// Fencing-Token header.
	ErrNoToken = errors.New("fence: no Fencing-Token header")

	// ErrClosed is returned by a FloorStore used after Close.
	ErrClosed = errors.New("fence: floor store closed")
)

// StaleError reports a request refused because its token is lower than the
// floor of its resource: a newer lock holder has already been there, so the
// sender's lease is gone. It matches ErrStale.
type StaleError struct {
	Resource string       // the resource the request acted on
	Token    fencer.Token // the token the request carried
	Floor    fencer.Token // the highest token the resource has seen
}

// Error says which tokens clashed and what the sender should do, e.g.
// `fence: token 33 is stale: resource "x" has seen token 34; ...`.
func (e *StaleError) Error() string {
	return fmt.Sprintf("fence: token %d is stale: resource %q has seen token %d; "+
		"the lock was granted to someone else since, so stop and acquire it again (a token of at least %d is accepted)",
		e.Token, e.Resource, e.Floor, e.Floor)
}

// Is reports whether target is ErrStale.
func (e *StaleError) Is(target error) bool { return target == ErrStale }
