package lockstate

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// apply encodes and applies cmd, failing the test if an invariant breaks.
func apply(t testing.TB, m *Machine, cmd Command) Result {
	t.Helper()
	res := m.Apply(Encode(cmd))
	if err := checkInvariants(m); err != nil {
		t.Fatalf("after %#v: %v", cmd, err)
	}
	return res
}

func TestTooManyPending(t *testing.T) {
	m := New()
	apply(t, m, OpenSession{TTL: time.Second})
	for seq := uint64(1); seq <= MaxPending; seq++ {
		if res := apply(t, m, Acquire{Session: 1, Seq: seq, Name: "a"}); res.Status == StatusFailed && res.Code != CodeAlreadyHeld {
			t.Fatalf("seq %d: %s", seq, res)
		}
	}
	res := apply(t, m, Acquire{Session: 1, Seq: MaxPending + 1, Name: "b"})
	if res.Code != CodeTooManyPending || !strings.Contains(res.Message, "acked-below") {
		t.Fatalf("request beyond the limit: %s", res)
	}
	if _, held := m.Lock("b"); held {
		t.Fatal("a refused request took effect")
	}
	// A retry of a recorded request is still answered, and acknowledging
	// frees room.
	if res := apply(t, m, Acquire{Session: 1, Seq: MaxPending, Name: "a"}); res.Code != CodeAlreadyHeld {
		t.Fatalf("retry at the limit: %s", res)
	}
	if res := apply(t, m, Acquire{Session: 1, Seq: MaxPending + 1, AckedBelow: MaxPending + 1, Name: "b"}); res.Status != StatusGranted {
		t.Fatalf("after acknowledging: %s", res)
	}
	if s, _ := m.Session(1); s.Pending != 1 {
		t.Fatalf("pending records = %d, want 1", s.Pending)
	}
}

func TestQueries(t *testing.T) {
	m := New()
	t0 := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	apply(t, m, OpenSession{TTL: 30 * time.Second, Now: t0})
	apply(t, m, OpenSession{TTL: time.Minute, Now: t0.Add(time.Second)})
	apply(t, m, Acquire{Session: 1, Seq: 1, Name: "x", LockDelay: 3 * time.Second, Now: t0.Add(2 * time.Second)})
	apply(t, m, Acquire{Session: 1, Seq: 2, Name: "y", LockDelay: 4 * time.Second, Now: t0.Add(2 * time.Second)})
	apply(t, m, Acquire{Session: 2, Seq: 1, AckedBelow: 1, Name: "x", Wait: true, Now: t0.Add(3 * time.Second)})

	got, ok := m.Lock("x")
	want := LockInfo{Name: "x", Holder: 1, Token: 1, Seq: 1, Since: t0.Add(2 * time.Second), LockDelay: 3 * time.Second,
		Waiters: []WaiterInfo{{Session: 2, Seq: 1, Since: t0.Add(3 * time.Second)}}}
	if !ok || !reflect.DeepEqual(got, want) {
		t.Fatalf("Lock(x) = %+v, %v; want %+v", got, ok, want)
	}
	if _, ok := m.Lock("nope"); ok {
		t.Fatal("Lock of a free name reports it held")
	}
	s, ok := m.Session(2)
	if want := (SessionInfo{ID: 2, TTL: time.Minute, Opened: t0.Add(time.Second), AckedBelow: 1, Waiting: []string{"x"}, Pending: 1}); !ok || !reflect.DeepEqual(s, want) {
		t.Fatalf("Session(2) = %+v, %v; want %+v", s, ok, want)
	}
	if _, ok := m.Session(3); ok {
		t.Fatal("Session of an unknown ID reports it open")
	}
	if got := m.PendingDelays(); got != nil {
		t.Fatalf("PendingDelays with none = %v", got)
	}

	apply(t, m, ExpireSession{Session: 1, Now: t0.Add(time.Minute)})
	want2 := []Event{
		{Kind: EventDelayed, Name: "x", Generation: 1, Delay: 3 * time.Second},
		{Kind: EventDelayed, Name: "y", Generation: 2, Delay: 4 * time.Second},
	}
	if got := m.PendingDelays(); !reflect.DeepEqual(got, want2) {
		t.Fatalf("PendingDelays = %v, want %v", got, want2)
	}
	if got := m.Sessions(); len(got) != 1 || got[0].ID != 2 {
		t.Fatalf("Sessions = %+v, want only session 2", got)
	}
	if names := lockNames(m.Locks()); names != "x y" {
		t.Fatalf("Locks = %s, want x y", names)
	}
	if m.LastToken() != 2 {
		t.Fatalf("LastToken = %d, want 2", m.LastToken())
	}
}

func lockNames(ls []LockInfo) string {
	var names []string
	for _, l := range ls {
		names = append(names, l.Name)
	}
	return strings.Join(names, " ")
}

// busyMachine returns a Machine with a bit of everything: records, held
// locks, waiters and a lock in lock-delay.
func busyMachine(t testing.TB) *Machine {
	m := New()
	for _, cmd := range []Command{
		OpenSession{TTL: time.Second}, OpenSession{TTL: time.Second}, OpenSession{TTL: time.Second},
		Acquire{Session: 1, Seq: 1, Name: "a", LockDelay: time.Second},
		Acquire{Session: 2, Seq: 1, Name: "a", Wait: true},
		Acquire{Session: 2, Seq: 2, Name: "b"},
		Acquire{Session: 3, Seq: 1, Name: "b", Wait: true},
		Acquire{Session: 3, Seq: 2, Name: "c", LockDelay: time.Second},
		Acquire{Session: 1, Seq: 2, Name: "c", Wait: true},
		ExpireSession{Session: 3},
	} {
		apply(t, m, cmd)
	}
	return m
}

func TestRestoreRejects(t *testing.T) {
	good := busyMachine(t).Snapshot()
	mutate := func(f func([]byte) []byte) []byte { return f(bytes.Clone(good)) }
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "does not start with"},
		{"bad magic", mutate(func(b []byte) []byte { b[0] = 'X'; return b }), "does not start with"},
		{"future version", mutate(func(b []byte) []byte { b[4] = 2; return b }), "unknown version"},
		{"truncated", good[:len(good)-1], "bad lock state snapshot"},
		{"trailing byte", append(bytes.Clone(good), 0), "after the last field"},
		{"last token lowered", mutate(func(b []byte) []byte { b[5] = 1; return b }), "token"},
		{"duplicate lock", renameLock(good, "b", "a"), `"a" does not follow "a"`},
		{"locks out of order", renameLock(good, "a", "d"), `"b" does not follow "d"`},
		{"generation counter zeroed", mutate(func(b []byte) []byte { b[7] = 0; return b }), "lock-delay"},
		{"snapshot of a different state", []byte("FLSM\x01\x00\x00\x00\x00\x01\x01a\x01\x01\x00\x00\x00\x00\x00"), "holder 1 is not an open session"},
		{"non-canonical varint", []byte("FLSM\x01\x80\x00\x00\x00\x00\x00"), "not minimally encoded"},
		{"huge count", []byte("FLSM\x01\x00\x00\x00\xff\xff\xff\xff\x0f"), "does not fit"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := busyMachine(t)
			before := m.Hash()
			err := m.Restore(bytes.NewReader(tc.data))
			if err == nil || !errors.Is(err, ErrBadSnapshot) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Restore = %v, want an ErrBadSnapshot mentioning %q", err, tc.want)
			}
			if m.Hash() != before {
				t.Fatal("a failed Restore changed the state")
			}
		})
	}
	t.Run("read error", func(t *testing.T) {
		m := busyMachine(t)
		before := m.Hash()
		boom := errors.New("disk on fire")
		if err := m.Restore(iotest.ErrReader(boom)); !errors.Is(err, boom) {
			t.Fatalf("Restore = %v, want the read error", err)
		}
		if m.Hash() != before {
			t.Fatal("a failed Restore changed the state")
		}
	})
}

// renameLock renames a lock in the locks section of a snapshot, which comes
// after every record that could hold the same name.
func renameLock(snap []byte, from, to string) []byte {
	b := bytes.Clone(snap)
	i := bytes.LastIndex(b, []byte("\x01"+from))
	b[i+1] = to[0]
	return b
}

func TestRestoreReplacesState(t *testing.T) {
	src := busyMachine(t)
	dst := New()
	apply(t, dst, OpenSession{TTL: time.Second})
	apply(t, dst, Acquire{Session: 1, Seq: 1, Name: "zzz"})
	if err := dst.Restore(bytes.NewReader(src.Snapshot())); err != nil {
		t.Fatal(err)
	}
	if dst.Hash() != src.Hash() {
		t.Fatal("restored machine differs")
	}
	if _, ok := dst.Lock("zzz"); ok {
		t.Fatal("old state survived Restore")
	}
	// Both go on identically.
	for _, m := range []*Machine{src, dst} {
		if res := apply(t, m, LiftDelay{Name: "c", Generation: 1}); res.Status != StatusOK || len(res.Events) != 1 || res.Events[0].Token != 4 {
			t.Fatalf("lift after restore: %s %v", res, res.Events)
		}
	}
	if dst.Hash() != src.Hash() {
		t.Fatal("machines diverged after restore")
	}
}

func TestEncodeDecode(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	for _, cmd := range []Command{
		OpenSession{TTL: 15 * time.Second, Now: now},
		OpenSession{},
		Acquire{Session: 1, Seq: 2, AckedBelow: 1, Name: "a/b", Wait: true, LockDelay: time.Second, Now: now},
		Acquire{Session: 1<<64 - 1, Seq: 1<<64 - 1, Name: "", LockDelay: -1},
		Release{Session: 3, Seq: 4, AckedBelow: 4, Name: "x", Token: 99, Now: now},
		Cancel{Session: 3, Seq: 5, Name: "x", Now: now},
		ExpireSession{Session: 7, Now: now},
		CloseSession{Session: 8},
		LiftDelay{Name: "x", Generation: 3, Now: now},
		Nop{},
	} {
		got, err := Decode(Encode(cmd))
		if err != nil || !reflect.DeepEqual(got, cmd) {
			t.Errorf("Decode(Encode(%#v)) = %#v, %v", cmd, got, err)
		}
	}
	// Times decode in UTC and without a monotonic reading, so a decoded
	// command equals its re-decoded self.
	local := time.Now()
	c, _ := Decode(Encode(OpenSession{TTL: time.Second, Now: local}))
	if got := c.(OpenSession).Now; !got.Equal(local) || got.Location() != time.UTC {
		t.Errorf("time %v decoded as %v", local, got)
	}
	defer func() {
		if recover() == nil {
			t.Error("Encode of a pointer did not panic")
		}
	}()
	Encode(&Nop{})
}

func TestStrings(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{Status(0).String(), "status(0)"},
		{Code(200).String(), "code(200)"},
		{AbortReason(9).String(), "reason(9)"},
		{EventKind(0).String(), "event(0)"},
		{Event{Kind: 9, Name: "a"}.String(), `{Kind:event(9) Session:0 Seq:0 Name:a Token:0 Reason:none Generation:0 Delay:0s}`},
		{Result{Status: StatusAborted, Reason: ReasonCanceled}.String(), "aborted reason=canceled"},
		{cmdType(0).String(), "command(0)"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

// TestRecordsStayBounded runs a long hand-off loop between two sessions
// whose clients acknowledge as they go: nothing may accumulate.
func TestRecordsStayBounded(t *testing.T) {
	m := New()
	apply(t, m, OpenSession{TTL: time.Second})
	apply(t, m, OpenSession{TTL: time.Second})
	seq := map[uint64]uint64{}
	next := func(s uint64) uint64 { seq[s]++; return seq[s] }
	apply(t, m, Acquire{Session: 1, Seq: next(1), AckedBelow: seq[1], Name: "hot"})
	holder, token := uint64(1), uint64(1)
	for range 10_000 {
		other := 3 - holder
		if res := m.Apply(Encode(Acquire{Session: other, Seq: next(other), AckedBelow: seq[other], Name: "hot", Wait: true})); res.Status != StatusQueued {
			t.Fatalf("queue: %s", res)
		}
		res := m.Apply(Encode(Release{Session: holder, Seq: next(holder), AckedBelow: seq[holder], Name: "hot", Token: token}))
		if len(res.Events) != 1 || res.Events[0].Session != other {
			t.Fatalf("hand-off: %s %v", res, res.Events)
		}
		holder, token = other, res.Events[0].Token
	}
	if err := checkInvariants(m); err != nil {
		t.Fatal(err)
	}
	for id, s := range m.sessions {
		if len(s.replies) > 1 || cap(s.replies) > 8 || len(s.waits) > 0 || cap(s.waits) > 8 {
			t.Errorf("session %d keeps %d records (cap %d), %d waits (cap %d)", id, len(s.replies), cap(s.replies), len(s.waits), cap(s.waits))
		}
	}
	if l := m.locks["hot"]; len(l.waiters) != 0 || cap(l.waiters) > 8 {
		t.Errorf("lock keeps %d waiters (cap %d)", len(l.waiters), cap(l.waiters))
	}
}
