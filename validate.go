package fencer

import (
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits on what the Client accepts. Every backend enforces the same ones.
const (
	// MaxNameLen is the longest lock name in bytes.
	MaxNameLen = 256
	// MinTTL is the shortest lease. Shorter ones expire before a renewal
	// over a real network could reach the store.
	MinTTL = 10 * time.Millisecond
	// MaxTTL is the longest lease.
	MaxTTL = 24 * time.Hour
	// DefaultTTL is the lease used when Options.TTL is zero.
	DefaultTTL = 15 * time.Second
)

const acceptedName = "1 to 256 bytes of UTF-8 with no control characters"

// ValidateName returns an *InvalidError if name is not a lock name fencer
// accepts: 1 to 256 bytes of valid UTF-8 with no control characters.
func ValidateName(name string) error {
	bad := func(reason string) error {
		return &InvalidError{Field: "lock name", Value: name, Reason: reason, Accepted: acceptedName}
	}
	switch {
	case name == "":
		return bad("it is empty")
	case len(name) > MaxNameLen:
		return bad("it is " + strconv.Itoa(len(name)) + " bytes long")
	case !utf8.ValidString(name):
		return bad("it is not valid UTF-8")
	}
	for i, r := range name {
		if unicode.IsControl(r) {
			return bad("it has a control character at byte " + strconv.Itoa(i))
		}
	}
	return nil
}

// ValidateTTL returns an *InvalidError if ttl is outside MinTTL..MaxTTL.
func ValidateTTL(ttl time.Duration) error {
	if ttl < MinTTL || ttl > MaxTTL {
		return &InvalidError{Field: "ttl", Value: ttl.String(), Reason: "out of range", Accepted: "10ms to 24h"}
	}
	return nil
}

// ValidateLockDelay returns an *InvalidError if d is negative or above MaxTTL.
func ValidateLockDelay(d time.Duration) error {
	if d < 0 || d > MaxTTL {
		return &InvalidError{Field: "lock delay", Value: d.String(), Reason: "out of range", Accepted: "0 (none) to 24h"}
	}
	return nil
}

// Drift is the allowance for clock drift between this process and the
// store over a lease of ttl: 1% of the TTL plus 2 ms, as the Redlock
// description prescribes.
func Drift(ttl time.Duration) time.Duration { return ttl/100 + 2*time.Millisecond }

// safetyMargin is taken off a lease's validity on top of Drift, so that the
// lease-loss signal reaches the holder's code before the store could expire
// the lease, even when the signal's own goroutine is scheduled late.
func safetyMargin(ttl time.Duration) time.Duration { return ttl/100 + time.Millisecond }

// ValidUntil is the client's conservative view of when a lease whose request
// was sent at sent with the given TTL stops being valid: sent + ttl −
// Drift(ttl) − a safety margin of 1% + 1 ms.
func ValidUntil(sent time.Time, ttl time.Duration) time.Time {
	return sent.Add(ttl - Drift(ttl) - safetyMargin(ttl))
}
