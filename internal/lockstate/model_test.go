package lockstate

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

// model is a deliberately dumb implementation of the same rules: slices,
// linear scans, no held sets or wait lists (they are derived by scanning
// the locks). TestAgainstModel checks that Machine agrees with it on every
// result and every state.
type model struct {
	lastToken, lastSession, lastGen uint64
	sessions                        []*mSession // in ID order
	locks                           []*mLock    // in creation order
}

type mSession struct {
	id         uint64
	ttl        time.Duration
	opened     int64
	ackedBelow uint64
	records    []mRecord // in any order
}

type mRecord struct {
	seq  uint64
	typ  cmdType
	name string
	res  Result // no Message, no Events
}

type mLock struct {
	name                    string
	holder, token, seq, gen uint64
	since                   int64
	delay                   time.Duration
	waiters                 []waiter
}

func (md *model) session(id uint64) *mSession {
	for _, s := range md.sessions {
		if s.id == id {
			return s
		}
	}
	return nil
}

func (md *model) lock(name string) *mLock {
	for _, l := range md.locks {
		if l.name == name {
			return l
		}
	}
	return nil
}

func (md *model) dropLock(l *mLock) {
	md.locks = slices.DeleteFunc(md.locks, func(x *mLock) bool { return x == l })
}

func modelName(name string) bool {
	if name == "" || len(name) > 256 || !utf8.ValidString(name) {
		return false
	}
	return !strings.ContainsFunc(name, unicode.IsControl)
}

func fail(code Code) Result { return Result{Status: StatusFailed, Code: code} }

func (md *model) apply(cmd Command) Result {
	switch c := cmd.(type) {
	case OpenSession:
		if c.TTL < 10*time.Millisecond || c.TTL > 24*time.Hour {
			return fail(CodeInvalidArgument)
		}
		id := c.ID
		if id == 0 {
			for id = md.lastSession + 1; md.session(id) != nil; id++ {
			}
			md.lastSession = id
		} else if s := md.session(id); s != nil {
			if s.ttl != c.TTL {
				return fail(CodeInvalidArgument)
			}
			return Result{Status: StatusOK, Session: id}
		}
		md.sessions = append(md.sessions, &mSession{id: id, ttl: c.TTL, opened: unixNanos(c.Now)})
		return Result{Status: StatusOK, Session: id}
	case Acquire:
		return md.request(c.Session, c.Seq, c.AckedBelow, cmdAcquire, c.Name, func(s *mSession) Result { return md.acquire(s, c) })
	case Release:
		return md.request(c.Session, c.Seq, c.AckedBelow, cmdRelease, c.Name, func(s *mSession) Result { return md.release(s, c) })
	case Cancel:
		return md.request(c.Session, c.Seq, c.AckedBelow, cmdCancel, c.Name, func(s *mSession) Result { return md.cancel(s, c) })
	case ExpireSession:
		return md.end(c.Session, unixNanos(c.Now), true)
	case CloseSession:
		return md.end(c.Session, unixNanos(c.Now), false)
	case LiftDelay:
		l := md.lock(c.Name)
		if l == nil || l.gen == 0 || l.gen != c.Generation {
			return Result{Status: StatusNoop}
		}
		l.gen, l.delay, l.since = 0, 0, 0
		var ev []Event
		md.handOff(l, unixNanos(c.Now), &ev)
		return Result{Status: StatusOK, Events: ev}
	case Nop:
		return Result{Status: StatusOK}
	}
	panic(fmt.Sprintf("model: no rule for %T", cmd))
}

func (md *model) request(id, seq, acked uint64, typ cmdType, name string, exec func(*mSession) Result) Result {
	s := md.session(id)
	if s == nil {
		return fail(CodeUnknownSession)
	}
	if acked > seq {
		return fail(CodeInvalidArgument)
	}
	if acked > s.ackedBelow {
		s.ackedBelow = acked
		s.records = slices.DeleteFunc(s.records, func(r mRecord) bool { return r.seq < acked })
	}
	if seq < s.ackedBelow {
		return fail(CodeStaleRequest)
	}
	for _, r := range s.records {
		if r.seq == seq {
			if r.typ != typ || r.name != name {
				return fail(CodeSeqReused)
			}
			return r.res
		}
	}
	if len(s.records) >= MaxPending {
		return fail(CodeTooManyPending)
	}
	res := exec(s)
	s.records = append(s.records, mRecord{seq: seq, typ: typ, name: name, res: Result{Status: res.Status, Code: res.Code, Token: res.Token, Reason: res.Reason}})
	return res
}

func (md *model) acquire(s *mSession, c Acquire) Result {
	if !modelName(c.Name) || c.LockDelay < 0 || c.LockDelay > 24*time.Hour {
		return fail(CodeInvalidArgument)
	}
	l := md.lock(c.Name)
	if l == nil {
		l = &mLock{name: c.Name}
		md.locks = append(md.locks, l)
		var ev []Event
		md.grant(l, waiter{session: s.id, seq: c.Seq, delay: c.LockDelay}, unixNanos(c.Now), &ev)
		return Result{Status: StatusGranted, Token: l.token, Events: ev}
	}
	if l.holder == s.id {
		return fail(CodeAlreadyHeld)
	}
	for _, w := range l.waiters {
		if w.session == s.id {
			return fail(CodeAlreadyQueued)
		}
	}
	if !c.Wait {
		return Result{Status: StatusLocked}
	}
	l.waiters = append(l.waiters, waiter{session: s.id, seq: c.Seq, delay: c.LockDelay, since: unixNanos(c.Now)})
	return Result{Status: StatusQueued}
}

func (md *model) grant(l *mLock, w waiter, now int64, ev *[]Event) {
	md.lastToken++
	l.holder, l.token, l.seq, l.since, l.delay, l.gen = w.session, md.lastToken, w.seq, now, w.delay, 0
	*ev = append(*ev, Event{Kind: EventGranted, Session: w.session, Seq: w.seq, Name: l.name, Token: l.token})
	md.resolve(w.session, w.seq, Result{Status: StatusGranted, Token: l.token})
}

func (md *model) resolve(id, seq uint64, res Result) {
	s := md.session(id)
	for i, r := range s.records {
		if r.seq == seq && r.res.Status == StatusQueued {
			s.records[i].res = res
		}
	}
}

func (md *model) handOff(l *mLock, now int64, ev *[]Event) {
	if len(l.waiters) == 0 {
		md.dropLock(l)
		return
	}
	w := l.waiters[0]
	l.waiters = slices.Clone(l.waiters[1:])
	if len(l.waiters) == 0 {
		l.waiters = nil
	}
	md.grant(l, w, now, ev)
}

func (md *model) release(s *mSession, c Release) Result {
	if !modelName(c.Name) {
		return fail(CodeInvalidArgument)
	}
	l := md.lock(c.Name)
	if l == nil || l.holder != s.id || l.token != c.Token {
		return fail(CodeNotHolder)
	}
	l.holder, l.token, l.seq, l.since, l.delay = 0, 0, 0, 0, 0
	var ev []Event
	md.handOff(l, unixNanos(c.Now), &ev)
	return Result{Status: StatusOK, Events: ev}
}

func (md *model) cancel(s *mSession, c Cancel) Result {
	if !modelName(c.Name) {
		return fail(CodeInvalidArgument)
	}
	l := md.lock(c.Name)
	if l == nil {
		return Result{Status: StatusNoop}
	}
	if l.holder == s.id {
		return Result{Status: StatusGranted, Token: l.token}
	}
	for i, w := range l.waiters {
		if w.session == s.id {
			l.waiters = slices.Delete(l.waiters, i, i+1)
			md.resolve(s.id, w.seq, Result{Status: StatusAborted, Reason: ReasonCanceled})
			return Result{Status: StatusOK, Events: []Event{{Kind: EventWaitAborted, Session: s.id, Seq: w.seq, Name: c.Name, Reason: ReasonCanceled}}}
		}
	}
	return Result{Status: StatusNoop}
}

func (md *model) end(id uint64, now int64, expired bool) Result {
	if md.session(id) == nil {
		if expired {
			return Result{Status: StatusNoop}
		}
		return fail(CodeUnknownSession)
	}
	reason := ReasonSessionClosed
	if expired {
		reason = ReasonSessionExpired
	}
	byName := slices.Clone(md.locks)
	slices.SortFunc(byName, func(a, b *mLock) int { return strings.Compare(a.name, b.name) })
	var ev []Event
	for _, l := range byName {
		for i, w := range l.waiters {
			if w.session == id {
				l.waiters = slices.Delete(l.waiters, i, i+1)
				ev = append(ev, Event{Kind: EventWaitAborted, Session: id, Seq: w.seq, Name: l.name, Reason: reason})
				break
			}
		}
	}
	for _, l := range byName {
		if l.holder != id {
			continue
		}
		delay := l.delay
		l.holder, l.token, l.seq, l.since, l.delay = 0, 0, 0, 0, 0
		if expired && delay > 0 {
			md.lastGen++
			l.gen, l.delay, l.since = md.lastGen, delay, now
			ev = append(ev, Event{Kind: EventDelayed, Name: l.name, Generation: l.gen, Delay: delay})
			continue
		}
		md.handOff(l, now, &ev)
	}
	md.sessions = slices.DeleteFunc(md.sessions, func(s *mSession) bool { return s.id == id })
	return Result{Status: StatusOK, Events: ev}
}

// lockInfos and sessionInfos are what Machine.Locks and Machine.Sessions
// should return.
func (md *model) lockInfos() []LockInfo {
	out := []LockInfo{}
	for _, l := range md.locks {
		li := LockInfo{Name: l.name, Holder: l.holder, Token: l.token, Seq: l.seq, Since: fromUnixNanos(l.since), LockDelay: l.delay, DelayGeneration: l.gen}
		for _, w := range l.waiters {
			li.Waiters = append(li.Waiters, WaiterInfo{Session: w.session, Seq: w.seq, LockDelay: w.delay, Since: fromUnixNanos(w.since)})
		}
		out = append(out, li)
	}
	slices.SortFunc(out, func(a, b LockInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func (md *model) sessionInfos() []SessionInfo {
	out := []SessionInfo{}
	for _, s := range md.sessions {
		si := SessionInfo{ID: s.id, TTL: s.ttl, Opened: fromUnixNanos(s.opened), AckedBelow: s.ackedBelow, Pending: len(s.records)}
		for _, l := range md.locks {
			if l.holder == s.id {
				si.Held = append(si.Held, l.name)
			}
			for _, w := range l.waiters {
				if w.session == s.id {
					si.Waiting = append(si.Waiting, l.name)
				}
			}
		}
		slices.Sort(si.Held)
		slices.Sort(si.Waiting)
		out = append(out, si)
	}
	slices.SortFunc(out, func(a, b SessionInfo) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// gen makes random but plausible command sequences: mostly live sessions,
// a few lock names so they collide, seqs that mostly advance and sometimes
// repeat, tokens and generations that are mostly current.
type gen struct {
	r       *rand.Rand
	md      *model
	nextSq  map[uint64]uint64  // per session: next fresh seq
	acked   map[uint64]uint64  // per session: acked-below the client sends
	lastAcq map[uint64]Acquire // per session: the last Acquire, to retry
	now     time.Time
}

func newGen(seed uint64, md *model) *gen {
	return &gen{r: rand.New(rand.NewPCG(seed, 0x5eed)), md: md, nextSq: map[uint64]uint64{}, acked: map[uint64]uint64{}, lastAcq: map[uint64]Acquire{}, now: epoch}
}

var names = []string{"a", "b", "c", "d", "e"}

func (g *gen) session() uint64 {
	if len(g.md.sessions) == 0 || g.r.IntN(10) == 0 {
		return g.r.Uint64N(g.md.lastSession + 2) // maybe gone, maybe never opened
	}
	return g.md.sessions[g.r.IntN(len(g.md.sessions))].id
}

// request returns session, seq and acked-below for a request.
func (g *gen) request() (id, seq, acked uint64) {
	return g.requestFor(g.session())
}

func (g *gen) requestFor(id uint64) (_, seq, acked uint64) {
	next := g.nextSq[id]
	if next == 0 {
		next = 1
	}
	acked = g.acked[id]
	if next > 1 && g.r.IntN(5) == 0 {
		// A retry, or a late duplicate from the network carrying the
		// acked-below it was sent with.
		seq = g.r.Uint64N(next-1) + 1
		return id, seq, g.r.Uint64N(min(acked, seq) + 1)
	}
	seq = next
	g.nextSq[id] = next + 1
	switch g.r.IntN(10) {
	case 0:
		acked = seq + 1 // a client bug
	case 1, 2, 3:
		acked += g.r.Uint64N(seq - acked + 1)
		g.acked[id] = acked
	}
	return id, seq, acked
}

func (g *gen) name() string {
	switch g.r.IntN(40) {
	case 0:
		return ""
	case 1:
		return "bad\x00name"
	}
	return names[g.r.IntN(len(names))]
}

func (g *gen) delay() time.Duration {
	switch g.r.IntN(20) {
	case 0:
		return -time.Second
	case 1:
		return 25 * time.Hour
	case 2, 3, 4, 5, 6, 7:
		return time.Duration(1+g.r.IntN(5)) * time.Second
	}
	return 0
}

func (g *gen) command() Command {
	g.now = g.now.Add(time.Duration(g.r.IntN(1000)) * time.Millisecond)
	switch p := g.r.IntN(100); {
	case p < 10:
		ttl := 10 * time.Second
		if g.r.IntN(10) == 0 {
			ttl = time.Millisecond
		}
		var id uint64 // mostly machine-chosen; sometimes client-chosen, colliding now and then
		if g.r.IntN(3) == 0 {
			id = g.r.Uint64N(g.md.lastSession + 4)
		}
		return OpenSession{ID: id, TTL: ttl, Now: g.now}
	case p < 45:
		if last, ok := g.lastAcq[g.session()]; ok && g.r.IntN(5) == 0 {
			return last // a retry of the same request
		}
		id, seq, acked := g.request()
		c := Acquire{Session: id, Seq: seq, AckedBelow: acked, Name: g.name(), Wait: g.r.IntN(2) == 0, LockDelay: g.delay(), Now: g.now}
		g.lastAcq[id] = c
		return c
	case p < 65:
		id, name, token := g.session(), g.name(), g.r.Uint64N(g.md.lastToken+2)
		if len(g.md.locks) > 0 && g.r.IntN(2) == 0 { // mostly the holder's own release
			l := g.md.locks[g.r.IntN(len(g.md.locks))]
			id, name, token = l.holder, l.name, l.token
		}
		id, seq, acked := g.requestFor(id)
		return Release{Session: id, Seq: seq, AckedBelow: acked, Name: name, Token: token, Now: g.now}
	case p < 72:
		id, name := g.session(), g.name()
		for _, l := range g.md.locks {
			if len(l.waiters) > 0 && g.r.IntN(2) == 0 { // mostly a real wait
				id, name = l.waiters[g.r.IntN(len(l.waiters))].session, l.name
			}
		}
		id, seq, acked := g.requestFor(id)
		return Cancel{Session: id, Seq: seq, AckedBelow: acked, Name: name, Now: g.now}
	case p < 78:
		return ExpireSession{Session: g.session(), Now: g.now}
	case p < 82:
		return CloseSession{Session: g.session(), Now: g.now}
	case p < 96:
		name, generation := g.name(), g.r.Uint64N(g.md.lastGen+2)
		for _, l := range g.md.locks {
			if l.gen != 0 && g.r.IntN(2) == 0 {
				name, generation = l.name, l.gen
			}
		}
		return LiftDelay{Name: name, Generation: generation, Now: g.now}
	}
	return Nop{}
}

// TestAgainstModel applies random command sequences to a Machine and to the
// model and checks, after every entry: the same result and events (messages
// aside), the same locks and sessions, the invariants, tokens strictly
// increasing; and at random points that a snapshot restores to the same
// hash and carries on identically.
func TestAgainstModel(t *testing.T) {
	seeds, steps := 300, 400
	if testing.Short() {
		seeds = 50
	}
	for seed := range uint64(seeds) {
		m, md := New(), &model{}
		g := newGen(seed, md)
		var history []string
		failf := func(format string, args ...any) {
			t.Helper()
			start := max(0, len(history)-15)
			t.Fatalf("seed %d, step %d: %s\nlast commands:\n%s", seed, len(history), fmt.Sprintf(format, args...), strings.Join(history[start:], "\n"))
		}
		var maxToken uint64
		for range steps {
			cmd := g.command()
			entry := Encode(cmd)
			if g.r.IntN(50) == 0 { // a corrupted entry: Apply must refuse it unchanged
				entry = entry[:g.r.IntN(len(entry))]
			}
			decoded, err := Decode(entry)
			var want Result
			if err != nil {
				want = Result{Status: StatusFailed, Code: CodeMalformed}
			} else {
				want = md.apply(decoded)
			}
			got := m.Apply(entry)
			history = append(history, fmt.Sprintf("%#v -> %s %v", decoded, got, got.Events))
			if !sameResult(got, want) {
				failf("result\n got: %s %v\nwant: %s %v", got, got.Events, want, want.Events)
			}
			if got.Status == StatusFailed && got.Message == "" {
				failf("failed result without a message: %s", got)
			}
			for _, e := range got.Events {
				if e.Kind == EventGranted {
					if e.Token <= maxToken {
						failf("token %d granted after %d", e.Token, maxToken)
					}
					maxToken = e.Token
				}
			}
			if err := checkInvariants(m); err != nil {
				failf("invariant: %v", err)
			}
			if gotL, wantL := m.Locks(), md.lockInfos(); !reflect.DeepEqual(gotL, wantL) {
				failf("locks\n got: %+v\nwant: %+v", gotL, wantL)
			}
			if gotS, wantS := m.Sessions(), md.sessionInfos(); !reflect.DeepEqual(gotS, wantS) {
				failf("sessions\n got: %+v\nwant: %+v", gotS, wantS)
			}
			if m.LastToken() != md.lastToken {
				failf("last token %d, model %d", m.LastToken(), md.lastToken)
			}
			if g.r.IntN(40) == 0 {
				c, err := checkRoundTrip(m)
				if err != nil {
					failf("snapshot: %v", err)
				}
				m = c // carry on with the restored copy
				history = append(history, "(snapshot and restore)")
			}
		}
	}
}

// sameResult compares everything but the message, which the model does not
// reproduce.
func sameResult(a, b Result) bool {
	a.Message, b.Message = "", ""
	if len(a.Events) == 0 {
		a.Events = nil
	}
	if len(b.Events) == 0 {
		b.Events = nil
	}
	return reflect.DeepEqual(a, b)
}

// TestReplicasAgree applies one random sequence to two machines, one of
// which is restored from snapshots along the way, and compares hashes: the
// determinism a Raft replica relies on.
func TestReplicasAgree(t *testing.T) {
	for seed := range uint64(20) {
		g := newGen(seed+1000, &model{})
		a, b := New(), New()
		for i := range 500 {
			entry := Encode(g.command())
			if cmd, err := Decode(entry); err == nil {
				g.md.apply(cmd)
			}
			ra, rb := a.Apply(entry), b.Apply(entry)
			if !reflect.DeepEqual(ra, rb) {
				t.Fatalf("seed %d entry %d: results differ: %s vs %s", seed, i, ra, rb)
			}
			if i%97 == 0 {
				c, err := checkRoundTrip(b)
				if err != nil {
					t.Fatal(err)
				}
				b = c
			}
		}
		if a.Hash() != b.Hash() {
			t.Fatalf("seed %d: replicas diverged", seed)
		}
	}
}
