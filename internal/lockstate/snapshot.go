package lockstate

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"maps"
	"slices"
)

// ErrBadSnapshot is wrapped by every error Restore returns for bytes that
// are not a valid snapshot.
var ErrBadSnapshot = errors.New("bad lock state snapshot")

const (
	snapshotMagic   = "FLSM"
	snapshotVersion = 1
)

// Snapshot returns the whole state, encoded. Equal states give equal bytes:
// sessions are sorted by ID, locks by name, records by seq.
//
// Layout, version 1: "FLSM", version byte 1; uvarints last token, last
// session ID, last delay generation; session count, then per session ID,
// TTL, opened, acked-below, record count, then per record seq, type byte,
// name, status, code and reason bytes, token, message; lock count, then per
// lock name, holder, token, seq, since, lock-delay, generation, waiter
// count, then per waiter session, seq, lock-delay, since. Durations and
// times are signed varints, strings length-prefixed. The held lists and
// waits of sessions are derived from the locks on Restore.
func (m *Machine) Snapshot() []byte {
	b := make([]byte, 0, 64+48*len(m.sessions)+64*len(m.locks))
	b = append(b, snapshotMagic...)
	b = append(b, snapshotVersion)
	b = binary.AppendUvarint(b, m.lastToken)
	b = binary.AppendUvarint(b, m.lastSession)
	b = binary.AppendUvarint(b, m.lastGen)

	b = binary.AppendUvarint(b, uint64(len(m.sessions)))
	for _, id := range slices.Sorted(maps.Keys(m.sessions)) {
		s := m.sessions[id]
		b = binary.AppendUvarint(b, s.id)
		b = binary.AppendVarint(b, int64(s.ttl))
		b = binary.AppendVarint(b, s.opened)
		b = binary.AppendUvarint(b, s.ackedBelow)
		b = binary.AppendUvarint(b, uint64(len(s.replies)))
		for _, r := range s.replies {
			b = binary.AppendUvarint(b, r.seq)
			b = append(b, byte(r.typ))
			b = appendString(b, r.name)
			b = append(b, byte(r.status), byte(r.code), byte(r.reason))
			b = binary.AppendUvarint(b, r.token)
			b = appendString(b, r.message)
		}
	}

	b = binary.AppendUvarint(b, uint64(len(m.locks)))
	for _, l := range m.sortedLocks() {
		b = appendString(b, l.name)
		b = binary.AppendUvarint(b, l.holder)
		b = binary.AppendUvarint(b, l.token)
		b = binary.AppendUvarint(b, l.seq)
		b = binary.AppendVarint(b, l.since)
		b = binary.AppendVarint(b, int64(l.delay))
		b = binary.AppendUvarint(b, l.gen)
		b = binary.AppendUvarint(b, uint64(len(l.waiters)))
		for _, w := range l.waiters {
			b = binary.AppendUvarint(b, w.session)
			b = binary.AppendUvarint(b, w.seq)
			b = binary.AppendVarint(b, int64(w.delay))
			b = binary.AppendVarint(b, w.since)
		}
	}
	b = binary.AppendUvarint(b, uint64(len(m.members)))
	for _, id := range slices.Sorted(maps.Keys(m.members)) {
		b = appendString(b, id)
		b = appendString(b, m.members[id])
	}
	return b
}

// Hash returns the FNV-1a digest of Snapshot: equal on replicas that
// applied the same entries. For comparing replicas in tests and checks, not
// for security. It costs a full Snapshot.
func (m *Machine) Hash() uint64 {
	h := fnv.New64a()
	h.Write(m.Snapshot())
	return h.Sum64()
}

// Restore replaces the whole state with a snapshot read from r. If r does
// not hold a valid snapshot, or reading fails, it returns an error and the
// state is left as it was. It checks every reference (holders, waiters and
// records point at open sessions; tokens and generations are not above
// their counters), so a restored Machine keeps every invariant.
func (m *Machine) Restore(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("lockstate: reading snapshot: %w", err)
	}
	fresh, err := decodeSnapshot(data)
	if err != nil {
		return err
	}
	*m = *fresh
	return nil
}

func decodeSnapshot(data []byte) (*Machine, error) {
	if !bytes.HasPrefix(data, []byte(snapshotMagic)) {
		return nil, fmt.Errorf("%w: does not start with %q", ErrBadSnapshot, snapshotMagic)
	}
	if len(data) < 5 || data[4] != snapshotVersion {
		return nil, fmt.Errorf("%w: unknown version; this build reads version %d", ErrBadSnapshot, snapshotVersion)
	}
	d := decoder{b: data, off: 5, what: "header", sentinel: ErrBadSnapshot}
	m := New()
	m.lastToken, m.lastSession, m.lastGen = d.uvarint("last token"), d.uvarint("last session"), d.uvarint("last generation")

	// Besides the references, decoding checks the order (sessions by ID,
	// records by seq, locks by name, each strictly increasing), and the
	// decoder refuses non-minimal varints, so an accepted snapshot is the
	// one Snapshot would write: Hash survives the round trip.
	n := d.count("session count", 4)
	m.sessions = make(map[uint64]*session, n)
	var lastID uint64
	for range n {
		d.what = "session"
		s := &session{id: d.uvarint("id"), ttl: d.duration("ttl"), opened: d.varint("opened"), ackedBelow: d.uvarint("acked-below")}
		switch {
		case d.err != nil:
		case s.id <= lastID:
			d.fail("id %d does not follow %d", s.id, lastID)
		case s.ttl < MinTTL || s.ttl > MaxTTL:
			d.fail("session %d: TTL %v is outside %v to %v", s.id, s.ttl, MinTTL, MaxTTL)
		}
		nr := d.count("record count", 8)
		if nr > MaxPending {
			d.fail("session %d: %d records, above the limit %d", s.id, nr, MaxPending)
		}
		for range nr {
			r := reply{seq: d.uvarint("record seq"), typ: cmdType(d.byte("record type")), name: d.string("record name"),
				status: Status(d.byte("record status")), code: Code(d.byte("record code")), reason: AbortReason(d.byte("record reason")),
				token: d.uvarint("record token"), message: d.string("record message")}
			switch {
			case d.err != nil:
			case r.seq < s.ackedBelow:
				d.fail("session %d: record seq %d is below acked-below %d", s.id, r.seq, s.ackedBelow)
			case len(s.replies) > 0 && r.seq <= s.replies[len(s.replies)-1].seq:
				d.fail("session %d: record seq %d does not follow seq %d", s.id, r.seq, s.replies[len(s.replies)-1].seq)
			case r.typ != cmdAcquire && r.typ != cmdRelease && r.typ != cmdCancel:
				d.fail("session %d: record seq %d has type %s; only acquire, release and cancel are recorded", s.id, r.seq, r.typ)
			case r.status == 0 || r.status > StatusFailed || r.code > CodeAlreadyQueued || r.reason > ReasonSessionExpired,
				(r.status == StatusFailed) != (r.code != CodeNone), (r.status == StatusAborted) != (r.reason != ReasonNone):
				d.fail("session %d: record seq %d has an unknown or inconsistent status, code or reason", s.id, r.seq)
			case r.token > m.lastToken:
				d.fail("session %d: record seq %d has token %d, above the last token %d", s.id, r.seq, r.token, m.lastToken)
			}
			s.replies = append(s.replies, r)
		}
		m.sessions[s.id] = s
		lastID = s.id
	}

	n = d.count("lock count", 8)
	m.locks = make(map[string]*lock, n)
	var lastName string
	for i := range n {
		d.what = "lock"
		name := d.string("name")
		if i > 0 && name <= lastName {
			d.fail("%q does not follow %q", name, lastName)
		}
		lastName = name
		l := &lock{name: name, holder: d.uvarint("holder"), token: d.uvarint("token"), seq: d.uvarint("seq"), since: d.varint("since"), delay: d.duration("lock-delay"), gen: d.uvarint("generation")}
		if d.err != nil {
			break
		}
		holder := m.sessions[l.holder]
		switch {
		case checkName(name) != "":
			d.fail("%s", checkName(name))
		case l.delay < 0 || l.delay > MaxLockDelay:
			d.fail("%q: lock-delay %v is outside 0 to %v", name, l.delay, MaxLockDelay)
		case l.holder != 0 && (holder == nil || l.gen != 0 || l.token == 0 || l.token > m.lastToken):
			d.fail("%q: holder %d is not an open session, or its token %d is not in 1 to %d, or it has a delay generation", name, l.holder, l.token, m.lastToken)
		case l.holder == 0 && (l.gen == 0 || l.gen > m.lastGen || l.delay == 0 || l.token != 0 || l.seq != 0):
			d.fail("%q: neither held nor in a valid lock-delay (generation %d, last %d)", name, l.gen, m.lastGen)
		}
		if holder != nil {
			holder.link(l)
		}
		nw := d.count("waiter count", 4)
		for range nw {
			w := waiter{session: d.uvarint("waiter session"), seq: d.uvarint("waiter seq"), delay: d.duration("waiter lock-delay"), since: d.varint("waiter since")}
			ws := m.sessions[w.session]
			switch {
			case d.err != nil:
			case ws == nil || w.session == l.holder || ws.waitIndex(name) >= 0:
				d.fail("%q: waiter session %d is not open, holds the lock or is queued twice", name, w.session)
			case w.delay < 0 || w.delay > MaxLockDelay:
				d.fail("%q: waiter lock-delay %v is outside 0 to %v", name, w.delay, MaxLockDelay)
			default:
				ws.waits = append(ws.waits, wait{name: name, seq: w.seq})
			}
			l.waiters = append(l.waiters, w)
		}
		m.locks[name] = l
	}
	d.what = "member"
	n = d.count("member count", 2)
	var lastMember string
	for i := range n {
		id, addr := d.string("id"), d.string("addr")
		switch {
		case d.err != nil:
		case i > 0 && id <= lastMember:
			d.fail("%q does not follow %q", id, lastMember)
		case id == "" || len(id) > MaxMemberIDLen || addr == "" || len(addr) > MaxMemberAddrLen:
			d.fail("%q: ID or address empty or too long", id)
		}
		lastMember = id
		m.members[id] = addr
	}
	if err := d.finish(); err != nil {
		return nil, err
	}
	// A record still Queued must belong to a wait, or a retry would be
	// told "queued" forever.
	for _, s := range m.sessions {
		for _, r := range s.replies {
			if r.status == StatusQueued && !slices.Contains(s.waits, wait{name: r.name, seq: r.seq}) {
				return nil, fmt.Errorf("%w: session %d: record seq %d is queued for %q, but the session does not wait for it", ErrBadSnapshot, s.id, r.seq, r.name)
			}
		}
	}
	return m, nil
}

// count reads a length that must fit in the bytes left, given each element
// takes at least minSize bytes; this bounds allocation on corrupt input.
func (d *decoder) count(field string, minSize int) int {
	n := d.uvarint(field)
	if d.err == nil && n > uint64((len(d.b)-d.off)/minSize) {
		d.fail("%s %d does not fit in the %d bytes left", field, n, len(d.b)-d.off)
		return 0
	}
	return int(n)
}
