// Package rediskey is what fencer's two Redis locks (redislock and
// redlock) write into Redis the same way: the key of a lock name, the
// owner value of a grant, and a TTL in milliseconds.
package rediskey

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
	"time"
)

// Write writes prefix + "{" + name + "}" to k, with room for extra more
// bytes. A name that starts with '}' would make the hash tag empty (Redis
// then hashes the whole key, and a lock's keys could land in different
// Cluster slots), so such a name, and to keep the mapping one-to-one every
// name that starts with '%', gets a '%' in front.
func Write(k *strings.Builder, prefix, name string, extra int) {
	k.Grow(len(prefix) + len(name) + 3 + extra)
	k.WriteString(prefix)
	k.WriteByte('{')
	if name != "" && (name[0] == '}' || name[0] == '%') {
		k.WriteByte('%')
	}
	k.WriteString(name)
	k.WriteByte('}')
}

// Key returns the key Write writes.
func Key(prefix, name string) string {
	var k strings.Builder
	Write(&k, prefix, name, 0)
	return k.String()
}

// NewValue returns a fresh owner value: 128 bits from crypto/rand in hex.
func NewValue() string {
	var raw [16]byte
	_, _ = rand.Read(raw[:]) // never fails (crypto/rand, Go 1.24+)
	var h [32]byte
	hex.Encode(h[:], raw[:])
	return string(h[:])
}

// Millis rounds ttl up to whole milliseconds, so that Redis never keeps a
// lease for less than the TTL the Client measures validity from.
func Millis(ttl time.Duration) int64 {
	return int64((ttl + time.Millisecond - 1) / time.Millisecond)
}
