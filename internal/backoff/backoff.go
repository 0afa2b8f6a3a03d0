// Package backoff is the jittered exponential back-off that a waiting
// acquire falls back on when no wake-up (pub/sub, NOTIFY, a pushed grant)
// comes: redislock, redlock and pglock share it.
package backoff

import (
	"math/rand/v2"
	"time"

	"github.com/fencerlock/fencer"
)

// Backoff hands out the waits between attempts: each step doubles up to a
// maximum and is jittered down by up to half, so that competing waiters
// spread out. Not safe for concurrent use; one per waiting call.
type Backoff struct {
	next, max time.Duration
}

// New returns a Backoff whose first step is first and whose steps grow to
// at most max.
func New(first, max time.Duration) Backoff { return Backoff{next: first, max: max} }

// Next returns the wait before the next attempt: the current step,
// jittered, or, if sooner, just after the holder's lease runs out (left;
// negative when unknown).
func (b *Backoff) Next(left time.Duration) time.Duration {
	d := Jitter(b.next)
	b.next = min(2*b.next, b.max)
	if left >= 0 && left+time.Millisecond < d {
		d = left + time.Millisecond
	}
	return d
}

// Reset starts the steps over from first, as after a near miss that makes
// an early retry worth it.
func (b *Backoff) Reset(first time.Duration) { b.next = first }

// Jitter returns d reduced by a random amount of up to half.
func Jitter(d time.Duration) time.Duration { return d/2 + rand.N(d/2+1) }

// Bounds are the first (Min) and the longest (Max) step of a Backoff: a
// backend's Config.MinBackoff and Config.MaxBackoff.
type Bounds struct {
	Min, Max time.Duration
}

// Fill returns b with its zero fields set from def, the backend's defaults:
// a zero Min means def.Min, or Max if that is smaller; a zero Max means
// def.Max, or Min if that is larger. It returns an *fencer.InvalidError,
// naming the field as pkg+" MinBackoff" or pkg+" MaxBackoff" (pkg is the
// backend's package, e.g. "pglock"), if either is negative or Min is above
// Max.
func (b Bounds) Fill(pkg string, def Bounds) (Bounds, error) {
	if b.Min < 0 {
		return b, &fencer.InvalidError{Field: pkg + " MinBackoff", Value: b.Min.String(),
			Reason: "it is negative", Accepted: "0 (the default, " + def.Min.String() + ") or a positive duration"}
	}
	if b.Max < 0 {
		return b, &fencer.InvalidError{Field: pkg + " MaxBackoff", Value: b.Max.String(),
			Reason: "it is negative", Accepted: "0 (the default, " + def.Max.String() + ") or a positive duration"}
	}
	if b.Min == 0 {
		b.Min = def.Min
		if b.Max != 0 {
			b.Min = min(b.Min, b.Max)
		}
	}
	if b.Max == 0 {
		b.Max = max(def.Max, b.Min)
	}
	if b.Min > b.Max {
		return b, &fencer.InvalidError{Field: pkg + " MinBackoff", Value: b.Min.String(),
			Reason: "it is above MaxBackoff " + b.Max.String(), Accepted: "a MinBackoff no larger than MaxBackoff"}
	}
	return b, nil
}
