package analyze

import (
	"strconv"
	"strings"
	"testing"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/internal/history"
	"github.com/fencerlock/fencer/internal/store"
)

// base makes hand-written times look like CLOCK_MONOTONIC readings.
const base = history.Time(1_000_000_000_000)

// at converts ms from the start of a test history into a history.Time.
func at(ms float64) history.Time { return base + history.Time(ms*1e6) }

// builder writes histories by hand: one line per event, times in ms.
type builder struct {
	events []history.Event
	ops    map[string]uint64
}

func newBuilder() *builder { return &builder{ops: map[string]uint64{}} }

type opt func(*history.Event)

func tok(t uint64) opt     { return func(e *history.Event) { e.Token = t } }
func val(v string) opt     { return func(e *history.Event) { e.Value = v } }
func lock(l string) opt    { return func(e *history.Event) { e.Lock = l } }
func attr(k, v string) opt { return func(e *history.Event) { e.Attrs[k] = v } }
func validUntil(ms float64) opt {
	return attr(AttrValidUntil, strconv.FormatInt(int64(at(ms)), 10))
}

func (b *builder) add(ms float64, process string, op uint64, kind history.Kind, opts ...opt) {
	e := history.Event{Time: at(ms), Process: process, Op: op, Kind: kind, Lock: "L", Attrs: map[string]string{}}
	for _, o := range opts {
		o(&e)
	}
	if len(e.Attrs) == 0 {
		e.Attrs = nil
	}
	b.events = append(b.events, e)
}

// invoke records an invocation with the process's next op number and
// returns it; done records its completion.
func (b *builder) invoke(ms float64, process string, kind history.Kind, opts ...opt) uint64 {
	b.ops[process]++
	op := b.ops[process]
	b.add(ms, process, op, kind, opts...)
	return op
}

func (b *builder) done(ms float64, process string, op uint64, kind history.Kind, opts ...opt) {
	b.add(ms, process, op, kind, opts...)
}

// event records a standalone event.
func (b *builder) event(ms float64, process string, kind history.Kind, opts ...opt) {
	b.add(ms, process, 0, kind, opts...)
}

// entries builds an accept log from lines "op key token accepted floor".
func entries(t *testing.T, lines ...string) []store.Entry {
	t.Helper()
	var es []store.Entry
	for i, l := range lines {
		f := strings.Fields(l)
		if len(f) != 5 {
			t.Fatalf("entry %q: want op key token accepted floor", l)
		}
		tk, _ := strconv.ParseUint(f[2], 10, 64)
		fl, _ := strconv.ParseUint(f[4], 10, 64)
		es = append(es, store.Entry{Seq: uint64(i + 1), Op: f[0], Key: f[1], Token: fencer.Token(tk),
			Accepted: f[3] == "yes", Floor: fencer.Token(fl)})
	}
	return es
}

func mustAnalyze(t *testing.T, r *Run) *Analysis {
	t.Helper()
	a, err := Analyze(r, nil)
	if err != nil {
		t.Fatalf("Analyze: %v", err)
	}
	return a
}

func findings(a *Analysis, k FindingKind) []Finding {
	var out []Finding
	for _, f := range a.Findings() {
		if f.Kind == k {
			out = append(out, f)
		}
	}
	return out
}

func lin(b *bool) string {
	if b == nil {
		return "null"
	}
	return strconv.FormatBool(*b)
}

// hasEvent reports whether evs holds an event of process and kind.
func hasEvent(evs []history.Event, process string, kind history.Kind) bool {
	for _, e := range evs {
		if e.Process == process && e.Kind == kind {
			return true
		}
	}
	return false
}
