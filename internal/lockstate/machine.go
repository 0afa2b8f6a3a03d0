package lockstate

import (
	"cmp"
	"fmt"
	"slices"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits the machine enforces. They match the fencer package's, so a request
// the client accepts is never refused here. Changing one changes how entries
// already in Raft logs apply: do it only with a new command type.
const (
	// MaxNameLen is the longest lock name, in bytes.
	MaxNameLen = 256
	// MinTTL is the shortest session TTL.
	MinTTL = 10 * time.Millisecond
	// MaxTTL is the longest session TTL.
	MaxTTL = 24 * time.Hour
	// MaxLockDelay is the longest lock-delay.
	MaxLockDelay = 24 * time.Hour
	// MaxPending is how many request results a session keeps before its
	// client acknowledges them (raises AckedBelow): the bound on the
	// client's requests in flight, and on the memory they cost here.
	MaxPending = 1024
)

// Machine is the lock state machine. The zero value is not usable; call
// [New]. A Machine is not safe for concurrent use: the caller serializes
// Apply, Snapshot, Restore and the queries. Its methods never fail except
// Restore, and never panic on any input.
type Machine struct {
	lastToken   uint64 // last fencing token issued; the next grant gets lastToken+1
	lastSession uint64 // last session ID issued
	lastGen     uint64 // last lock-delay generation issued
	sessions    map[uint64]*session
	locks       map[string]*lock  // only locks that are held or in lock-delay
	members     map[string]string // node ID -> client API address
}

// session is an open session. Its held list and waits mirror the locks map,
// so ending a session touches only its own locks.
type session struct {
	id         uint64
	ttl        time.Duration
	opened     int64 // Unix nanoseconds, display only
	ackedBelow uint64
	held       *lock   // first of the locks it holds, linked through lock.prev/next
	waits      []wait  // its queued Acquires, one per lock at most
	replies    []reply // results of requests with seq >= ackedBelow, by seq
}

type wait struct {
	name string
	seq  uint64
}

// reply is the recorded result of a request. The name and type catch a Seq
// reused for a different request.
type reply struct {
	seq     uint64
	typ     cmdType
	status  Status
	code    Code
	reason  AbortReason
	token   uint64
	name    string
	message string
}

// lock is a held lock (holder != 0), or a lock in lock-delay (gen != 0,
// holder == 0) after its holder's session expired. A lock that is neither
// is deleted, whatever its waiters: a free lock grants its head waiter at
// once.
type lock struct {
	name    string // its key in Machine.locks, sharing the bytes
	holder  uint64
	token   uint64
	seq     uint64        // the holder's Acquire seq
	since   int64         // grant time, or start of lock-delay; Unix nanoseconds
	delay   time.Duration // the holder's lock-delay; while delayed, its length
	gen     uint64        // lock-delay generation, nonzero while delayed
	waiters []waiter      // FIFO, head first
	// prev and next link the locks of one holder, so a release unlinks in
	// O(1) and an expiry finds its locks, without a map per session (a
	// map costs ~200 bytes, more than a typical session's locks).
	prev, next *lock
}

type waiter struct {
	session uint64
	seq     uint64
	delay   time.Duration // the lock-delay it asked for, used once granted
	since   int64         // when it queued; Unix nanoseconds
}

// New returns an empty Machine: no sessions, no locks, and token 0 issued.
func New() *Machine {
	return &Machine{sessions: map[uint64]*session{}, locks: map[string]*lock{}, members: map[string]string{}}
}

// Apply decodes and applies one committed log entry and returns its Result.
// Undecodable bytes give a Failed result with CodeMalformed and change
// nothing. Call it for every entry, in log order, on every replica.
func (m *Machine) Apply(data []byte) Result {
	cmd, err := Decode(data)
	if err != nil {
		return failed(CodeMalformed, "%v", err)
	}
	switch c := cmd.(type) {
	case OpenSession:
		return m.openSession(c)
	case Acquire:
		s, res, done := m.begin(c.Session, c.Seq, c.AckedBelow, cmdAcquire, c.Name)
		if done {
			return res
		}
		return s.record(c.Seq, cmdAcquire, c.Name, m.acquire(s, c))
	case Release:
		s, res, done := m.begin(c.Session, c.Seq, c.AckedBelow, cmdRelease, c.Name)
		if done {
			return res
		}
		return s.record(c.Seq, cmdRelease, c.Name, m.release(s, c))
	case Cancel:
		s, res, done := m.begin(c.Session, c.Seq, c.AckedBelow, cmdCancel, c.Name)
		if done {
			return res
		}
		return s.record(c.Seq, cmdCancel, c.Name, m.cancel(s, c))
	case ExpireSession:
		return m.endSession(c.Session, unixNanos(c.Now), true)
	case CloseSession:
		return m.endSession(c.Session, unixNanos(c.Now), false)
	case LiftDelay:
		return m.liftDelay(c)
	case Nop:
		return Result{Status: StatusOK}
	case SetMember:
		return m.setMember(c)
	}
	return failed(CodeMalformed, "command %T has no rule", cmd) // unreachable: Decode returns only the types above
}

func (m *Machine) openSession(c OpenSession) Result {
	if c.TTL < MinTTL || c.TTL > MaxTTL {
		return failed(CodeInvalidArgument, "session TTL %v is outside the accepted range %v to %v", c.TTL, MinTTL, MaxTTL)
	}
	id := c.ID
	if id == 0 {
		for id = m.lastSession + 1; id == 0 || m.sessions[id] != nil; id++ {
		}
		m.lastSession = id
	} else if s := m.sessions[id]; s != nil {
		if s.ttl != c.TTL {
			return failed(CodeInvalidArgument, "session %d is open with TTL %v, not %v; choose another random session ID", id, s.ttl, c.TTL)
		}
		return Result{Status: StatusOK, Session: id} // a retry
	}
	m.sessions[id] = &session{id: id, ttl: c.TTL, opened: unixNanos(c.Now)}
	return Result{Status: StatusOK, Session: id}
}

// MaxMemberIDLen and MaxMemberAddrLen bound SetMember's fields.
const (
	MaxMemberIDLen   = 64
	MaxMemberAddrLen = 256
)

func (m *Machine) setMember(c SetMember) Result {
	switch {
	case c.ID == "" || len(c.ID) > MaxMemberIDLen:
		return failed(CodeInvalidArgument, "member ID %q must be 1 to %d bytes", c.ID, MaxMemberIDLen)
	case len(c.Addr) > MaxMemberAddrLen:
		return failed(CodeInvalidArgument, "member address is %d bytes; at most %d are accepted", len(c.Addr), MaxMemberAddrLen)
	case c.Addr == "":
		delete(m.members, c.ID)
	default:
		m.members[c.ID] = c.Addr
	}
	return Result{Status: StatusOK}
}

// begin does the session and idempotency checks common to Acquire, Release
// and Cancel. It returns the session to execute for, or done and the answer.
func (m *Machine) begin(id, seq, ackedBelow uint64, typ cmdType, name string) (s *session, res Result, done bool) {
	s = m.sessions[id]
	if s == nil {
		return nil, failed(CodeUnknownSession, "session %d is not open (never opened, closed or expired); open a new session", id), true
	}
	if ackedBelow > seq {
		return nil, failed(CodeInvalidArgument, "acked-below %d is above the request's own seq %d; a client acknowledges only responses it has received", ackedBelow, seq), true
	}
	if ackedBelow > s.ackedBelow {
		s.ackedBelow = ackedBelow
		i, _ := s.find(ackedBelow)
		s.replies = slices.Delete(s.replies, 0, i)
	}
	if seq < s.ackedBelow {
		return nil, failed(CodeStaleRequest, "seq %d is below %d, the session's acked-below: the client already received this response; this is a late duplicate", seq, s.ackedBelow), true
	}
	if i, ok := s.find(seq); ok {
		r := s.replies[i]
		if r.typ != typ || r.name != name {
			return nil, failed(CodeSeqReused, "seq %d was already used for %s %q; use a new seq for a new request", seq, r.typ, r.name), true
		}
		return nil, Result{Status: r.status, Code: r.code, Message: r.message, Token: r.token, Reason: r.reason}, true
	}
	if len(s.replies) >= MaxPending {
		return nil, failed(CodeTooManyPending, "session %d has %d requests whose responses are not acknowledged, the limit; raise acked-below", id, len(s.replies)), true
	}
	return s, Result{}, false
}

// find returns the index of the reply with seq, or where it would go.
func (s *session) find(seq uint64) (int, bool) {
	return slices.BinarySearchFunc(s.replies, seq, func(r reply, seq uint64) int { return cmp.Compare(r.seq, seq) })
}

// record keeps res as the answer to a retry of (seq, typ, name) and returns it.
func (s *session) record(seq uint64, typ cmdType, name string, res Result) Result {
	i, _ := s.find(seq)
	s.replies = slices.Insert(s.replies, i, reply{
		seq: seq, typ: typ, name: name,
		status: res.Status, code: res.Code, reason: res.Reason, token: res.Token, message: res.Message,
	})
	return res
}

// resolve updates the record of a queued Acquire, if the client has not
// acknowledged it yet, so that a retry learns how the wait ended.
func (s *session) resolve(seq uint64, status Status, token uint64, reason AbortReason) {
	if i, ok := s.find(seq); ok && s.replies[i].status == StatusQueued {
		s.replies[i].status, s.replies[i].token, s.replies[i].reason = status, token, reason
	}
}

func (s *session) waitIndex(name string) int {
	return slices.IndexFunc(s.waits, func(w wait) bool { return w.name == name })
}

// removeWait drops the session's wait for name.
func (s *session) removeWait(name string) {
	if i := s.waitIndex(name); i >= 0 {
		s.waits = slices.Delete(s.waits, i, i+1)
	}
}

// link adds l to the locks s holds; unlink removes it.
func (s *session) link(l *lock) {
	l.prev, l.next = nil, s.held
	if s.held != nil {
		s.held.prev = l
	}
	s.held = l
}

func (s *session) unlink(l *lock) {
	if l.prev != nil {
		l.prev.next = l.next
	} else {
		s.held = l.next
	}
	if l.next != nil {
		l.next.prev = l.prev
	}
	l.prev, l.next = nil, nil
}

// heldLocks returns the locks s holds, sorted by name.
func (s *session) heldLocks() []*lock {
	var ls []*lock
	for l := s.held; l != nil; l = l.next {
		ls = append(ls, l)
	}
	slices.SortFunc(ls, func(a, b *lock) int { return cmp.Compare(a.name, b.name) })
	return ls
}

// free clears the holder of l, and its lock-delay; waiters stay.
func (l *lock) free() {
	l.holder, l.token, l.seq, l.since, l.delay, l.gen = 0, 0, 0, 0, 0, 0
}

// waiterIndex is O(queue length); see the doc's room for change.
func (l *lock) waiterIndex(session uint64) int {
	return slices.IndexFunc(l.waiters, func(w waiter) bool { return w.session == session })
}

func (m *Machine) acquire(s *session, c Acquire) Result {
	if msg := checkName(c.Name); msg != "" {
		return failed(CodeInvalidArgument, "%s", msg)
	}
	if c.LockDelay < 0 || c.LockDelay > MaxLockDelay {
		return failed(CodeInvalidArgument, "lock-delay %v is outside the accepted range 0 to %v", c.LockDelay, MaxLockDelay)
	}
	now := unixNanos(c.Now)
	l := m.locks[c.Name]
	if l == nil {
		l = &lock{name: c.Name}
		m.locks[c.Name] = l
		var events []Event
		m.grant(l, s, c.Seq, c.LockDelay, now, &events)
		return Result{Status: StatusGranted, Token: l.token, Events: events}
	}
	if l.holder == s.id {
		return failed(CodeAlreadyHeld, "session %d already holds lock %q (token %d, seq %d); locks are not re-entrant", s.id, c.Name, l.token, l.seq)
	}
	if i := s.waitIndex(c.Name); i >= 0 { // not l.waiterIndex: a hot lock's queue is long
		return failed(CodeAlreadyQueued, "session %d already waits for lock %q (seq %d); a session waits for a lock once", s.id, c.Name, s.waits[i].seq)
	}
	if !c.Wait {
		if l.holder == 0 {
			return Result{Status: StatusLocked, Message: fmt.Sprintf("lock %q is in lock-delay after its holder's session expired", c.Name)}
		}
		return Result{Status: StatusLocked, Message: fmt.Sprintf("lock %q is held by session %d", c.Name, l.holder)}
	}
	l.waiters = append(l.waiters, waiter{session: s.id, seq: c.Seq, delay: c.LockDelay, since: now})
	s.waits = append(s.waits, wait{name: l.name, seq: c.Seq})
	return Result{Status: StatusQueued}
}

// grant gives the free lock l to s with a fresh token.
func (m *Machine) grant(l *lock, s *session, seq uint64, delay time.Duration, now int64, events *[]Event) {
	m.lastToken++
	l.holder, l.token, l.seq, l.since, l.delay, l.gen = s.id, m.lastToken, seq, now, delay, 0
	s.link(l)
	*events = append(*events, Event{Kind: EventGranted, Session: s.id, Seq: seq, Name: l.name, Token: l.token})
}

// handOff gives a lock that just became free and undelayed to its head
// waiter, or deletes it if nobody waits.
func (m *Machine) handOff(l *lock, now int64, events *[]Event) {
	if len(l.waiters) == 0 {
		delete(m.locks, l.name)
		return
	}
	w := l.waiters[0]
	l.waiters = l.waiters[1:]
	if len(l.waiters) == 0 {
		l.waiters = nil
	}
	s := m.sessions[w.session] // every waiter's session is open: ending one removes its waits
	s.removeWait(l.name)
	m.grant(l, s, w.seq, w.delay, now, events)
	s.resolve(w.seq, StatusGranted, l.token, ReasonNone)
}

func (m *Machine) release(s *session, c Release) Result {
	if msg := checkName(c.Name); msg != "" {
		return failed(CodeInvalidArgument, "%s", msg)
	}
	l := m.locks[c.Name]
	switch {
	case l == nil:
		return failed(CodeNotHolder, "lock %q is not held", c.Name)
	case l.holder == 0:
		return failed(CodeNotHolder, "lock %q is in lock-delay and has no holder", c.Name)
	case l.holder != s.id:
		return failed(CodeNotHolder, "lock %q is held by session %d, not session %d", c.Name, l.holder, s.id)
	case l.token != c.Token:
		return failed(CodeNotHolder, "session %d holds lock %q with token %d, not %d; a stale token cannot release a later grant", s.id, c.Name, l.token, c.Token)
	}
	s.unlink(l)
	l.free()
	var events []Event
	m.handOff(l, unixNanos(c.Now), &events)
	return Result{Status: StatusOK, Events: events}
}

func (m *Machine) cancel(s *session, c Cancel) Result {
	if msg := checkName(c.Name); msg != "" {
		return failed(CodeInvalidArgument, "%s", msg)
	}
	l := m.locks[c.Name]
	if l != nil && l.holder == s.id {
		return Result{Status: StatusGranted, Token: l.token, Message: fmt.Sprintf("too late to cancel: session %d already holds lock %q; release it", s.id, c.Name)}
	}
	if s.waitIndex(c.Name) < 0 {
		return Result{Status: StatusNoop, Message: fmt.Sprintf("session %d is not waiting for lock %q", s.id, c.Name)}
	}
	i := l.waiterIndex(s.id)
	w := l.waiters[i]
	l.waiters = slices.Delete(l.waiters, i, i+1)
	s.removeWait(c.Name)
	s.resolve(w.seq, StatusAborted, 0, ReasonCanceled)
	return Result{Status: StatusOK, Events: []Event{{Kind: EventWaitAborted, Session: s.id, Seq: w.seq, Name: c.Name, Reason: ReasonCanceled}}}
}

// endSession closes or expires a session: first its waits are aborted, then
// its locks are released (into lock-delay on expiry if asked for), each in
// name order so every replica emits the same events and tokens.
func (m *Machine) endSession(id uint64, now int64, expired bool) Result {
	s := m.sessions[id]
	if s == nil {
		if expired {
			return Result{Status: StatusNoop, Message: fmt.Sprintf("session %d is not open; nothing to expire", id)}
		}
		return failed(CodeUnknownSession, "session %d is not open (never opened, closed or expired); nothing to close", id)
	}
	reason := ReasonSessionClosed
	if expired {
		reason = ReasonSessionExpired
	}
	var events []Event
	slices.SortFunc(s.waits, func(a, b wait) int { return cmp.Compare(a.name, b.name) })
	for _, w := range s.waits {
		l := m.locks[w.name]
		i := l.waiterIndex(id)
		l.waiters = slices.Delete(l.waiters, i, i+1)
		events = append(events, Event{Kind: EventWaitAborted, Session: id, Seq: w.seq, Name: w.name, Reason: reason})
	}
	for _, l := range s.heldLocks() {
		delay := l.delay
		s.unlink(l)
		l.free()
		if expired && delay > 0 {
			m.lastGen++
			l.gen, l.delay, l.since = m.lastGen, delay, now
			events = append(events, Event{Kind: EventDelayed, Name: l.name, Generation: l.gen, Delay: delay})
			continue
		}
		m.handOff(l, now, &events)
	}
	delete(m.sessions, id)
	return Result{Status: StatusOK, Events: events}
}

func (m *Machine) liftDelay(c LiftDelay) Result {
	l := m.locks[c.Name]
	if l == nil || l.gen == 0 {
		return Result{Status: StatusNoop, Message: fmt.Sprintf("lock %q is not in lock-delay", c.Name)}
	}
	if l.gen != c.Generation {
		return Result{Status: StatusNoop, Message: fmt.Sprintf("lock %q is in lock-delay generation %d, not %d; this LiftDelay is stale", c.Name, l.gen, c.Generation)}
	}
	l.free()
	var events []Event
	m.handOff(l, unixNanos(c.Now), &events)
	return Result{Status: StatusOK, Events: events}
}

// checkName returns why name is not a valid lock name, or "".
func checkName(name string) string {
	const accepted = "; a lock name is 1 to 256 bytes of UTF-8 without control characters"
	switch {
	case name == "":
		return "lock name is empty" + accepted
	case len(name) > MaxNameLen:
		return fmt.Sprintf("lock name is %d bytes long", len(name)) + accepted
	case !utf8.ValidString(name):
		return fmt.Sprintf("lock name %q is not valid UTF-8", name) + accepted
	}
	for i, r := range name {
		if unicode.IsControl(r) {
			return fmt.Sprintf("lock name %q has control character %U at byte %d", name, r, i) + accepted
		}
	}
	return ""
}
