package lockstate

import (
	"bytes"
	"fmt"
	"runtime"
	"testing"
	"time"
)

// entries pre-encodes commands in batches with the timer stopped, so the
// benchmarks time Apply alone, as on a follower.
type entries struct {
	b    *testing.B
	buf  [][]byte
	next func(i int) Command
	i    int
}

func (e *entries) get() []byte {
	if len(e.buf) == 0 {
		e.b.StopTimer()
		for range 4096 {
			e.buf = append(e.buf, Encode(e.next(e.i)))
			e.i++
		}
		e.b.StartTimer()
	}
	x := e.buf[0]
	e.buf = e.buf[1:]
	return x
}

// BenchmarkApplyAcquireRelease is the uncontended path: one op is an
// Acquire that creates and grants a lock and the Release that deletes it,
// two entries, on a machine that already holds 10k other locks.
func BenchmarkApplyAcquireRelease(b *testing.B) {
	m := New()
	m.Apply(Encode(OpenSession{TTL: time.Minute}))
	m.Apply(Encode(OpenSession{TTL: time.Minute}))
	for i := range 10_000 {
		m.Apply(Encode(Acquire{Session: 2, Seq: uint64(i + 1), AckedBelow: uint64(i + 1), Name: fmt.Sprintf("held/%d", i)}))
	}
	names := make([]string, 1024)
	for i := range names {
		names[i] = fmt.Sprintf("bench/%04d", i)
	}
	token := m.LastToken()
	e := &entries{b: b, next: func(i int) Command {
		seq := uint64(i + 1)
		name := names[(i/2)%len(names)]
		if i%2 == 0 {
			return Acquire{Session: 1, Seq: seq, AckedBelow: seq, Name: name, Now: epoch}
		}
		token++
		return Release{Session: 1, Seq: seq, AckedBelow: seq, Name: name, Token: token, Now: epoch}
	}}
	b.ReportAllocs()
	for b.Loop() {
		if res := m.Apply(e.get()); res.Status != StatusGranted {
			b.Fatalf("acquire: %s", res)
		}
		if res := m.Apply(e.get()); res.Status != StatusOK {
			b.Fatalf("release: %s", res)
		}
	}
}

// BenchmarkApplyHandoff is the contended path: one op is a Wait acquire that
// queues and the holder's release that grants it to the waiter, two entries.
func BenchmarkApplyHandoff(b *testing.B) {
	m := New()
	m.Apply(Encode(OpenSession{TTL: time.Minute}))
	m.Apply(Encode(OpenSession{TTL: time.Minute}))
	m.Apply(Encode(Acquire{Session: 1, Seq: 1, Name: "hot"}))
	holder, token, seqs := uint64(1), uint64(1), [3]uint64{0, 1, 0}
	e := &entries{b: b, next: func(i int) Command {
		if i%2 == 0 {
			w := 3 - holder
			seqs[w]++
			return Acquire{Session: w, Seq: seqs[w], AckedBelow: seqs[w], Name: "hot", Wait: true}
		}
		seqs[holder]++
		c := Release{Session: holder, Seq: seqs[holder], AckedBelow: seqs[holder], Name: "hot", Token: token}
		holder, token = 3-holder, token+1
		return c
	}}
	b.ReportAllocs()
	for b.Loop() {
		if res := m.Apply(e.get()); res.Status != StatusQueued {
			b.Fatalf("queue: %s", res)
		}
		if res := m.Apply(e.get()); len(res.Events) != 1 {
			b.Fatalf("hand-off: %s", res)
		}
	}
}

// heapGrowth returns the live heap that build leaves behind.
func heapGrowth(build func() *Machine) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	m := build()
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(m)
	return after.HeapAlloc - before.HeapAlloc
}

const memN = 100_000

// holdLocks returns a Machine where 100 sessions hold n locks named like
// "lock/00000042" (13 bytes) between them.
func holdLocks(n int) *Machine {
	m := New()
	for range 100 {
		m.Apply(Encode(OpenSession{TTL: time.Minute}))
	}
	for i := range n {
		seq := uint64(i/100 + 1)
		m.Apply(Encode(Acquire{Session: uint64(i%100 + 1), Seq: seq, AckedBelow: seq, Name: fmt.Sprintf("lock/%08d", i), Now: epoch}))
	}
	return m
}

// BenchmarkMemoryPerLock reports the heap a held lock costs, name
// included, and the snapshot bytes per lock.
func BenchmarkMemoryPerLock(b *testing.B) {
	base := heapGrowth(func() *Machine { return holdLocks(0) })
	var total uint64
	var snap int
	for b.Loop() {
		total += heapGrowth(func() *Machine {
			m := holdLocks(memN)
			snap = len(m.Snapshot())
			return m
		}) - base
	}
	b.ReportMetric(float64(total)/float64(b.N)/memN, "heap-B/lock")
	b.ReportMetric(float64(snap)/memN, "snapshot-B/lock")
}

// BenchmarkMemoryPerSession reports the heap an open session costs, with no
// locks and with one held lock (the first lock adds the session's held set).
func BenchmarkMemoryPerSession(b *testing.B) {
	var bare, holding uint64
	for b.Loop() {
		bare += heapGrowth(func() *Machine {
			m := New()
			for range memN {
				m.Apply(Encode(OpenSession{TTL: time.Minute}))
			}
			return m
		})
		holding += heapGrowth(func() *Machine {
			m := New()
			for i := range memN {
				m.Apply(Encode(OpenSession{TTL: time.Minute}))
				m.Apply(Encode(Acquire{Session: uint64(i + 1), Seq: 1, AckedBelow: 1, Name: fmt.Sprintf("lock/%08d", i)}))
			}
			return m
		})
	}
	b.ReportMetric(float64(bare)/float64(b.N)/memN, "heap-B/session")
	b.ReportMetric(float64(holding)/float64(b.N)/memN, "heap-B/session+lock")
}

// BenchmarkMemoryPerWaiter reports the heap a queued Acquire costs: memN
// sessions waiting for one lock.
func BenchmarkMemoryPerWaiter(b *testing.B) {
	build := func(wait bool) *Machine {
		m := New()
		m.Apply(Encode(OpenSession{TTL: time.Minute}))
		m.Apply(Encode(Acquire{Session: 1, Seq: 1, Name: "hot"}))
		for i := range memN {
			m.Apply(Encode(OpenSession{TTL: time.Minute}))
			if wait {
				m.Apply(Encode(Acquire{Session: uint64(i + 2), Seq: 1, AckedBelow: 1, Name: "hot", Wait: true}))
			}
		}
		return m
	}
	var total uint64
	for b.Loop() {
		total += heapGrowth(func() *Machine { return build(true) }) - heapGrowth(func() *Machine { return build(false) })
	}
	b.ReportMetric(float64(total)/float64(b.N)/memN, "heap-B/waiter")
}

// BenchmarkSnapshot measures Snapshot and Restore of 100k held locks.
func BenchmarkSnapshot(b *testing.B) {
	m := holdLocks(memN)
	b.Run("snapshot", func(b *testing.B) {
		for b.Loop() {
			m.Snapshot()
		}
	})
	data := m.Snapshot()
	b.Run("restore", func(b *testing.B) {
		for b.Loop() {
			if err := New().Restore(bytes.NewReader(data)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
