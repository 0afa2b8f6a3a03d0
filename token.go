package fencer

import "strconv"

// Token is a fencing token: a number issued with a grant that a storage service
// can compare with the highest token it has seen, refusing a lower one. Tokens
// of one lock strictly increase with every grant on backends that declare
// [Correctness]; on [Efficiency] backends they are only as reliable as the
// store behind them. The zero Token means "no token".
type Token uint64

// NoToken is the zero Token, carried by leases of backends that issue none.
const NoToken Token = 0

// String returns the decimal form of t, the form carried in a Fencing-Token
// header and in FENCER_TOKEN.
func (t Token) String() string { return strconv.FormatUint(uint64(t), 10) }

// ParseToken parses the decimal form of a token. It accepts what
// [Token.String] produces for a non-zero token.
func ParseToken(s string) (Token, error) {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || v == 0 || s[0] == '+' || (len(s) > 1 && s[0] == '0') {
		return 0, &InvalidError{Field: "token", Value: s, Accepted: "a decimal integer from 1 to 18446744073709551615"}
	}
	return Token(v), nil
}

// Guarantee is what a backend promises about mutual exclusion.
type Guarantee uint8

const (
	// Efficiency backends keep two clients from doing the same work most of
	// the time. A failover, a restart without persistence, a clock jump or a
	// long pause can let two clients hold the same lock; their tokens, if
	// any, can repeat or go backwards. Use them where an occasional double
	// execution costs a little time, never data.
	Efficiency Guarantee = 1
	// Correctness backends issue tokens that strictly increase with every
	// grant and are never reused, from consensus or a durable transactional
	// store. A lease can still be lost behind a paused holder's back (any
	// lease can), so the storage must check the token: see package fence.
	Correctness Guarantee = 2
)

// String returns "efficiency" or "correctness".
func (g Guarantee) String() string {
	switch g {
	case Efficiency:
		return "efficiency"
	case Correctness:
		return "correctness"
	}
	return "guarantee(" + strconv.Itoa(int(g)) + ")"
}
