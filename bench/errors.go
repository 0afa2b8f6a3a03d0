package bench

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/fencerlock/fencer"
)

// ErrorKind names the kind of a lock operation's error, for counting:
// "lease_lost", "locked", "closed", "invalid", "timeout", "canceled",
// "connection_refused", "connection_lost", "network" or "other". The
// sentinels of package fencer come first, so a peer's Locker can put its
// errors in the same kinds by wrapping them.
func ErrorKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, fencer.ErrLeaseLost):
		return "lease_lost"
	case errors.Is(err, fencer.ErrLocked):
		return "locked"
	case errors.Is(err, fencer.ErrClosed):
		return "closed"
	case errors.Is(err, fencer.ErrInvalid):
		return "invalid"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection_refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return "connection_lost"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.As(err, &ne):
		return "network"
	}
	return "other"
}
