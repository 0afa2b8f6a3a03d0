package lockstate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// ErrMalformed is wrapped by every error [Decode] returns.
var ErrMalformed = errors.New("malformed command")

// Command is one operation of the state machine: [OpenSession], [Acquire],
// [Release], [Cancel], [ExpireSession], [CloseSession], [LiftDelay] or [Nop].
// The set is closed; use a type switch. Commands are passed by value.
type Command interface {
	commandType() cmdType
}

// OpenSession opens a session and returns its ID in [Result.Session].
type OpenSession struct {
	// ID is the session's ID, chosen by the client at random so that the
	// open and the session's first Acquire can be proposed back to back.
	// Opening an ID that is open already, with the same TTL, is a retry:
	// it answers OK and changes nothing. Zero makes the machine pick the
	// next free ID.
	ID uint64
	// TTL is how long the session lives without a keep-alive, from
	// [MinTTL] to [MaxTTL]. The machine only stores it: the leader runs
	// the timer and proposes ExpireSession.
	TTL time.Duration
	// Now is the leader's wall clock when it proposed the command.
	// Display only; the same for every Now below.
	Now time.Time
}

// Acquire asks for a lock on behalf of a session. The Result is Granted
// (with the fencing token), Queued (Wait only: the session joined the FIFO
// queue and a later entry grants it, reported by a Granted event), Locked
// (without Wait: someone else holds the lock, or it is in lock-delay), or
// Failed.
type Acquire struct {
	// Session is the requesting session.
	Session uint64
	// Seq numbers the session's requests (Acquire, Release, Cancel), so a
	// retry with the same Seq is recognized and answered from the record.
	Seq uint64
	// AckedBelow says the client has received the response of every
	// request with a lower Seq; their records may be discarded. At most Seq.
	AckedBelow uint64
	// Name is the lock: 1 to [MaxNameLen] bytes of UTF-8 without control
	// characters.
	Name string
	// Wait queues the session if the lock is not free, instead of
	// answering Locked.
	Wait bool
	// LockDelay, from 0 to [MaxLockDelay], holds the lock back for this
	// long after it is released by an expiry of this session (not by a
	// clean release or close), for resources that cannot check tokens.
	LockDelay time.Duration
	// Now is the leader's wall clock; stored as the grant or queue time.
	Now time.Time
}

// Release frees a lock the session holds with Token, and grants it to the
// head waiter in the same entry. The Result is OK, or Failed with
// [CodeNotHolder] if the session does not hold the lock with that token.
type Release struct {
	Session, Seq, AckedBelow uint64    // as in Acquire
	Name                     string    // the lock
	Token                    uint64    // the fencing token of the grant being released
	Now                      time.Time // the leader's wall clock; the next holder's grant time
}

// Cancel withdraws the session's pending wait for a lock (a blocking acquire
// whose caller gave up). The Result is OK with a WaitAborted event; Noop if
// the session was not waiting; or Granted with the token if the grant won
// the race and the session now holds the lock, which it must then release.
type Cancel struct {
	Session, Seq, AckedBelow uint64    // as in Acquire
	Name                     string    // the lock waited for
	Now                      time.Time // the leader's wall clock
}

// ExpireSession ends a session whose deadline passed on the leader. Its
// waits are aborted; each lock it held goes into lock-delay if the holder
// asked for one, and otherwise to the next waiter. Expiring a session that
// is already gone is a Noop, so a leader may propose it twice.
type ExpireSession struct {
	Session uint64
	Now     time.Time // the leader's wall clock; the next holders' grant time
}

// CloseSession ends a session at its client's request: like ExpireSession,
// but clean, so no lock-delay applies. A session that is not open answers
// Failed with [CodeUnknownSession]; a client retrying a close treats that as
// success.
type CloseSession struct {
	Session uint64
	Now     time.Time // the leader's wall clock; the next holders' grant time
}

// LiftDelay ends a lock's lock-delay, granting the lock to its head waiter
// (or deleting it). The leader proposes it when the delay announced by a
// Delayed event has passed. A Generation that does not match the current
// delay is stale and a Noop.
type LiftDelay struct {
	Name       string    // the delayed lock
	Generation uint64    // from the Delayed event or PendingDelays
	Now        time.Time // the leader's wall clock; the next holder's grant time
}

// Nop changes nothing. A new leader commits one as a barrier before serving
// reads.
type Nop struct{}

// SetMember records the client API address of a cluster node, so that any
// node can point clients at the leader. An empty Addr forgets the node.
type SetMember struct {
	// ID is the node's ID: 1 to 64 bytes.
	ID string
	// Addr is the node's client API address (host:port), at most 256 bytes.
	Addr string
}

// cmdType is byte 0 of an encoded command. Values are part of the log
// format: never renumber or reuse one.
type cmdType byte

const (
	cmdOpenSession   cmdType = 1
	cmdAcquire       cmdType = 2
	cmdRelease       cmdType = 3
	cmdCancel        cmdType = 4
	cmdExpireSession cmdType = 5
	cmdCloseSession  cmdType = 6
	cmdLiftDelay     cmdType = 7
	cmdNop           cmdType = 8
	cmdSetMember     cmdType = 9
)

func (OpenSession) commandType() cmdType   { return cmdOpenSession }
func (Acquire) commandType() cmdType       { return cmdAcquire }
func (Release) commandType() cmdType       { return cmdRelease }
func (Cancel) commandType() cmdType        { return cmdCancel }
func (ExpireSession) commandType() cmdType { return cmdExpireSession }
func (CloseSession) commandType() cmdType  { return cmdCloseSession }
func (LiftDelay) commandType() cmdType     { return cmdLiftDelay }
func (Nop) commandType() cmdType           { return cmdNop }
func (SetMember) commandType() cmdType     { return cmdSetMember }

func (t cmdType) String() string {
	switch t {
	case cmdOpenSession:
		return "open"
	case cmdAcquire:
		return "acquire"
	case cmdRelease:
		return "release"
	case cmdCancel:
		return "cancel"
	case cmdExpireSession:
		return "expire"
	case cmdCloseSession:
		return "close"
	case cmdLiftDelay:
		return "lift"
	case cmdNop:
		return "nop"
	}
	return fmt.Sprintf("command(%d)", byte(t))
}

const flagWait = 1 // Acquire flag byte, bit 0; other bits must be zero

// Encode returns the log entry for cmd. It panics if cmd is nil or a
// pointer: that is a bug in the caller, not bad input.
func Encode(cmd Command) []byte {
	var b []byte
	switch c := cmd.(type) {
	case OpenSession:
		b = append(make([]byte, 0, 32), byte(cmdOpenSession))
		b = binary.AppendUvarint(b, c.ID)
		b = binary.AppendVarint(b, int64(c.TTL))
		b = appendTime(b, c.Now)
	case Acquire:
		b = append(make([]byte, 0, 48+len(c.Name)), byte(cmdAcquire))
		b = appendRequest(b, c.Session, c.Seq, c.AckedBelow)
		b = appendString(b, c.Name)
		var flags byte
		if c.Wait {
			flags |= flagWait
		}
		b = append(b, flags)
		b = binary.AppendVarint(b, int64(c.LockDelay))
		b = appendTime(b, c.Now)
	case Release:
		b = append(make([]byte, 0, 48+len(c.Name)), byte(cmdRelease))
		b = appendRequest(b, c.Session, c.Seq, c.AckedBelow)
		b = appendString(b, c.Name)
		b = binary.AppendUvarint(b, c.Token)
		b = appendTime(b, c.Now)
	case Cancel:
		b = append(make([]byte, 0, 40+len(c.Name)), byte(cmdCancel))
		b = appendRequest(b, c.Session, c.Seq, c.AckedBelow)
		b = appendString(b, c.Name)
		b = appendTime(b, c.Now)
	case ExpireSession:
		b = append(make([]byte, 0, 20), byte(cmdExpireSession))
		b = binary.AppendUvarint(b, c.Session)
		b = appendTime(b, c.Now)
	case CloseSession:
		b = append(make([]byte, 0, 20), byte(cmdCloseSession))
		b = binary.AppendUvarint(b, c.Session)
		b = appendTime(b, c.Now)
	case LiftDelay:
		b = append(make([]byte, 0, 24+len(c.Name)), byte(cmdLiftDelay))
		b = appendString(b, c.Name)
		b = binary.AppendUvarint(b, c.Generation)
		b = appendTime(b, c.Now)
	case Nop:
		b = []byte{byte(cmdNop)}
	case SetMember:
		b = append(make([]byte, 0, 4+len(c.ID)+len(c.Addr)), byte(cmdSetMember))
		b = appendString(b, c.ID)
		b = appendString(b, c.Addr)
	default:
		panic(fmt.Sprintf("lockstate: Encode of %T, want a Command value", cmd))
	}
	return b
}

// Decode parses a log entry made by [Encode]. It returns an error wrapping
// [ErrMalformed] for anything else: an unknown type byte, a truncated or
// non-minimal varint, unknown flag bits, or trailing bytes. It checks the
// encoding only; Apply checks the values (name rules, TTL range).
func Decode(b []byte) (Command, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty entry", ErrMalformed)
	}
	t := cmdType(b[0])
	d := decoder{b: b, off: 1, what: t.String(), sentinel: ErrMalformed}
	var cmd Command
	switch t {
	case cmdOpenSession:
		cmd = OpenSession{ID: d.uvarint("id"), TTL: d.duration("ttl"), Now: d.time("now")}
	case cmdAcquire:
		var c Acquire
		c.Session, c.Seq, c.AckedBelow = d.uvarint("session"), d.uvarint("seq"), d.uvarint("acked-below")
		c.Name = d.string("name")
		flags := d.byte("flags")
		if flags&^flagWait != 0 {
			d.fail("flags %#02x: unknown bits set; only bit 0 (wait) is defined", flags)
		}
		c.Wait = flags&flagWait != 0
		c.LockDelay = d.duration("lock-delay")
		c.Now = d.time("now")
		cmd = c
	case cmdRelease:
		var c Release
		c.Session, c.Seq, c.AckedBelow = d.uvarint("session"), d.uvarint("seq"), d.uvarint("acked-below")
		c.Name = d.string("name")
		c.Token = d.uvarint("token")
		c.Now = d.time("now")
		cmd = c
	case cmdCancel:
		var c Cancel
		c.Session, c.Seq, c.AckedBelow = d.uvarint("session"), d.uvarint("seq"), d.uvarint("acked-below")
		c.Name = d.string("name")
		c.Now = d.time("now")
		cmd = c
	case cmdExpireSession:
		cmd = ExpireSession{Session: d.uvarint("session"), Now: d.time("now")}
	case cmdCloseSession:
		cmd = CloseSession{Session: d.uvarint("session"), Now: d.time("now")}
	case cmdLiftDelay:
		var c LiftDelay
		c.Name = d.string("name")
		c.Generation = d.uvarint("generation")
		c.Now = d.time("now")
		cmd = c
	case cmdNop:
		cmd = Nop{}
	case cmdSetMember:
		cmd = SetMember{ID: d.string("id"), Addr: d.string("addr")}
	default:
		return nil, fmt.Errorf("%w: unknown command type %d; known types are 1 to %d", ErrMalformed, b[0], cmdSetMember)
	}
	if err := d.finish(); err != nil {
		return nil, err
	}
	return cmd, nil
}

func appendRequest(b []byte, session, seq, ackedBelow uint64) []byte {
	b = binary.AppendUvarint(b, session)
	b = binary.AppendUvarint(b, seq)
	return binary.AppendUvarint(b, ackedBelow)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendTime(b []byte, t time.Time) []byte {
	return binary.AppendVarint(b, unixNanos(t))
}

// unixNanos maps the zero time to 0 and any other time to Unix nanoseconds;
// fromUnixNanos inverts it, in UTC (so the Unix epoch itself reads back as
// the zero time, which for display-only timestamps is harmless). The machine
// stores int64s: 8 bytes instead of 24, and no location or monotonic
// reading to make equal times compare unequal.
func unixNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// decoder reads fields in order and keeps the first error, so a parse reads
// straight through and checks once at the end.
type decoder struct {
	b        []byte
	off      int
	what     string // command type or snapshot part, for messages
	sentinel error  // wrapped by every error
	err      error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s: %s", d.sentinel, d.what, fmt.Sprintf(format, args...))
	}
}

func (d *decoder) uvarint(field string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if !d.minimal(field, n) {
		return 0
	}
	return v
}

// minimal checks the varint of n bytes at d.off and moves past it. A varint
// is minimal unless it ends in a zero byte after the first: 0x80 0x00 also
// reads as 0. Refusing those gives every command exactly one encoding.
func (d *decoder) minimal(field string, n int) bool {
	switch {
	case n <= 0:
		d.fail("%s at byte %d: truncated or overlong varint", field, d.off)
		return false
	case n > 1 && d.b[d.off+n-1] == 0:
		d.fail("%s at byte %d: varint is not minimally encoded", field, d.off)
		return false
	}
	d.off += n
	return true
}

func (d *decoder) varint(field string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b[d.off:])
	if !d.minimal(field, n) {
		return 0
	}
	return v
}

func (d *decoder) duration(field string) time.Duration { return time.Duration(d.varint(field)) }
func (d *decoder) time(field string) time.Time         { return fromUnixNanos(d.varint(field)) }

func (d *decoder) byte(field string) byte {
	if d.err != nil {
		return 0
	}
	if d.off >= len(d.b) {
		d.fail("%s at byte %d: entry ends early", field, d.off)
		return 0
	}
	c := d.b[d.off]
	d.off++
	return c
}

func (d *decoder) string(field string) string {
	n := d.uvarint(field + " length")
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)-d.off) {
		d.fail("%s at byte %d: length %d exceeds the %d bytes left", field, d.off, n, len(d.b)-d.off)
		return ""
	}
	s := string(d.b[d.off : d.off+int(n)])
	d.off += int(n)
	return s
}

func (d *decoder) finish() error {
	if d.err == nil && d.off != len(d.b) {
		d.fail("%d byte(s) after the last field", len(d.b)-d.off)
	}
	return d.err
}
