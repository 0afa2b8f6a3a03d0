package fencer

import (
	"errors"
	"fmt"
)

var (
	// ErrLocked is returned by TryAcquire when another owner holds the lock.
	ErrLocked = errors.New("fencer: lock is held by another owner")

	// ErrLeaseLost is the cause of a lease's context when the lease is lost
	// or may have been lost: the backend said another owner has it, it
	// expired, or its conservative validity ran out without a successful
	// renewal. Renew and Release return it when the backend no longer
	// records the caller as the owner.
	ErrLeaseLost = errors.New("fencer: lease lost")

	// ErrReleased is the cause of a lease's context after Release.
	ErrReleased = errors.New("fencer: lease released")

	// ErrGuarantee is returned by Acquire when the options require a
	// guarantee the backend does not give, such as Correctness on a Redis
	// backend.
	ErrGuarantee = errors.New("fencer: backend does not give the required guarantee")

	// ErrClosed is returned by a Client or Backend used after Close.
	ErrClosed = errors.New("fencer: client closed")

	// ErrInvalid is matched (with errors.Is) by every *InvalidError.
	ErrInvalid = errors.New("fencer: invalid argument")
)

// InvalidError reports an argument that fencer refuses: a lock name, a TTL,
// a token, a URL or a flag. Its message says what was wrong and what is
// accepted. It matches ErrInvalid.
type InvalidError struct {
	Field    string // what was given, e.g. "lock name", "ttl"
	Value    string // the offending value, quoted in the message; may be shortened
	Reason   string // what is wrong with it; may be empty
	Accepted string // what would be accepted
}

func (e *InvalidError) Error() string {
	v := e.Value
	if len(v) > 64 {
		v = v[:61] + "..."
	}
	msg := fmt.Sprintf("fencer: invalid %s %q", e.Field, v)
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	if e.Accepted != "" {
		msg += "; accepted: " + e.Accepted
	}
	return msg
}

// Is reports whether target is ErrInvalid.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }
