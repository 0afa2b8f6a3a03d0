package lockstate

import (
	"bytes"
	"reflect"
	"testing"
	"time"
)

// seedCommands are valid commands the fuzzers start from; sessions 1 to 3
// and names a, b exist in fuzzSetup, so mutations reach real state.
var seedCommands = []Command{
	OpenSession{TTL: 10 * time.Second, Now: epoch},
	Acquire{Session: 1, Seq: 10, Name: "a", Wait: true, LockDelay: time.Second, Now: epoch},
	Acquire{Session: 2, Seq: 10, AckedBelow: 10, Name: "b", Now: epoch},
	Release{Session: 1, Seq: 11, Name: "a", Token: 1, Now: epoch},
	Release{Session: 2, Seq: 11, Name: "b", Token: 3},
	Cancel{Session: 2, Seq: 12, Name: "a"},
	ExpireSession{Session: 1, Now: epoch},
	CloseSession{Session: 2},
	LiftDelay{Name: "a", Generation: 1},
	Nop{},
}

// FuzzDecode checks that Decode never panics, and that whatever it accepts
// is canonical: it re-encodes to the same bytes and decodes to an equal
// command.
func FuzzDecode(f *testing.F) {
	for _, c := range seedCommands {
		f.Add(Encode(c))
	}
	f.Add([]byte{})
	f.Add([]byte{byte(cmdAcquire), 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		cmd, err := Decode(b)
		if err != nil {
			if cmd != nil {
				t.Fatalf("Decode returned %#v with error %v", cmd, err)
			}
			return
		}
		again := Encode(cmd)
		if !bytes.Equal(again, b) {
			t.Fatalf("Encode(Decode(%x)) = %x", b, again)
		}
		cmd2, err := Decode(again)
		if err != nil || !reflect.DeepEqual(cmd2, cmd) {
			t.Fatalf("Decode(Encode(%#v)) = %#v, %v", cmd, cmd2, err)
		}
	})
}

// FuzzEncode builds commands from fuzzed fields and checks the round trip
// Decode(Encode(x)) == x starting from the command rather than the bytes.
// Times are built as Decode returns them (UTC, no monotonic reading);
// TestEncodeDecode covers a local time.
func FuzzEncode(f *testing.F) {
	f.Add(uint8(2), uint64(1), uint64(2), uint64(1), "a", true, int64(time.Second), int64(1_700_000_000_000_000_000))
	f.Add(uint8(7), uint64(0), uint64(0), uint64(0), "", false, int64(-1), int64(0))
	f.Fuzz(func(t *testing.T, typ uint8, u1, u2, u3 uint64, name string, wait bool, d, now int64) {
		at := fromUnixNanos(now)
		cmds := []Command{
			OpenSession{TTL: time.Duration(d), Now: at},
			Acquire{Session: u1, Seq: u2, AckedBelow: u3, Name: name, Wait: wait, LockDelay: time.Duration(d), Now: at},
			Release{Session: u1, Seq: u2, AckedBelow: u3, Name: name, Token: uint64(d), Now: at},
			Cancel{Session: u1, Seq: u2, AckedBelow: u3, Name: name, Now: at},
			ExpireSession{Session: u1, Now: at},
			CloseSession{Session: u2, Now: at},
			LiftDelay{Name: name, Generation: u3, Now: at},
			Nop{},
		}
		cmd := cmds[int(typ)%len(cmds)]
		got, err := Decode(Encode(cmd))
		if err != nil || !reflect.DeepEqual(got, cmd) {
			t.Fatalf("Decode(Encode(%#v)) = %#v, %v", cmd, got, err)
		}
	})
}

// fuzzSetup returns a Machine with three sessions, held locks, waiters and
// a lock in lock-delay.
func fuzzSetup(t *testing.T) *Machine {
	m := New()
	for _, c := range []Command{
		OpenSession{TTL: time.Second}, OpenSession{TTL: time.Second}, OpenSession{TTL: time.Second},
		Acquire{Session: 1, Seq: 1, Name: "a", LockDelay: time.Second},
		Acquire{Session: 2, Seq: 1, Name: "a", Wait: true},
		Acquire{Session: 3, Seq: 1, Name: "a", Wait: true},
		Acquire{Session: 3, Seq: 2, Name: "c", LockDelay: time.Second},
		Acquire{Session: 2, Seq: 2, Name: "c", Wait: true},
		ExpireSession{Session: 3},
		OpenSession{TTL: time.Second},
		Acquire{Session: 4, Seq: 1, Name: "b"},
	} {
		if res := m.Apply(Encode(c)); res.Status == StatusFailed {
			t.Fatalf("setup %#v: %s", c, res)
		}
	}
	return m
}

// FuzzApply feeds arbitrary entries to a Machine: the input is a sequence
// of entries, each one length byte and that many bytes. Apply must never
// panic, a malformed entry must change nothing, every invariant must hold
// after every entry, tokens must strictly increase, and the final state
// must survive a snapshot round trip.
func FuzzApply(f *testing.F) {
	var all []byte
	for _, c := range seedCommands {
		e := Encode(c)
		f.Add(append([]byte{byte(len(e))}, e...))
		all = append(append(all, byte(len(e))), e...)
	}
	f.Add(all)
	f.Fuzz(func(t *testing.T, data []byte) {
		m := fuzzSetup(t)
		maxToken := m.LastToken()
		for len(data) > 0 {
			n := min(int(data[0]), len(data)-1)
			entry := data[1 : 1+n]
			data = data[1+n:]
			var before []byte // only for undecodable entries: snapshots are slow
			if _, err := Decode(entry); err != nil {
				before = m.Snapshot()
			}
			res := m.Apply(entry)
			if res.Status == 0 || (res.Status == StatusFailed) != (res.Code != CodeNone) {
				t.Fatalf("inconsistent result %s for %x", res, entry)
			}
			if (res.Code == CodeMalformed) != (before != nil) {
				t.Fatalf("entry %x: result %s, but Decode says malformed=%v", entry, res, before != nil)
			}
			if before != nil && !bytes.Equal(m.Snapshot(), before) {
				t.Fatalf("malformed entry %x changed the state", entry)
			}
			for _, e := range res.Events {
				if e.Kind == EventGranted {
					if e.Token <= maxToken {
						t.Fatalf("token %d granted after %d", e.Token, maxToken)
					}
					maxToken = e.Token
				}
			}
			if err := checkInvariants(m); err != nil {
				t.Fatalf("after %x (%s): %v", entry, res, err)
			}
		}
		if _, err := checkRoundTrip(m); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzRestore feeds arbitrary snapshots to Restore: it must never panic,
// must leave the state untouched when it refuses, and must produce a state
// that keeps every invariant and re-encodes to the same bytes when it
// accepts.
func FuzzRestore(f *testing.F) {
	f.Add(New().Snapshot())
	f.Add(busyMachine(f).Snapshot())
	f.Fuzz(func(t *testing.T, data []byte) {
		m := busyMachine(t)
		before := m.Snapshot()
		if err := m.Restore(bytes.NewReader(data)); err != nil {
			if !bytes.Equal(m.Snapshot(), before) {
				t.Fatalf("failed Restore (%v) changed the state", err)
			}
			return
		}
		if err := checkInvariants(m); err != nil {
			t.Fatalf("restored state: %v", err)
		}
		if !bytes.Equal(m.Snapshot(), data) {
			t.Fatal("restored state re-encodes differently")
		}
		// And it keeps working.
		for _, c := range seedCommands {
			if res := m.Apply(Encode(c)); res.Status == 0 || (res.Status == StatusFailed) != (res.Code != CodeNone) {
				t.Fatalf("inconsistent result %s for %#v on a restored state", res, c)
			}
			if err := checkInvariants(m); err != nil {
				t.Fatalf("after %#v on a restored state: %v", c, err)
			}
		}
	})
}
