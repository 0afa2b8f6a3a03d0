package lockstate

import (
	"encoding/hex"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the expected output of testdata/*.txt with the actual output")

// TestTranscripts runs testdata/*.txt. A file is a sequence of blocks: one
// command line, a line "----", the expected output, and a blank line. Lines
// starting with # are comments. The commands:
//
//	open [ttl=10s] [id=N]    id: a client-chosen session ID
//	acquire s=1 seq=1 name=a [wait] [delay=5s] [acked=0]
//	release s=1 seq=2 name=a token=1 [acked=0]
//	cancel s=1 seq=3 name=a [acked=0]
//	expire s=1
//	close s=1
//	lift name=a gen=1
//	nop
//	member id=n1 [addr=host:port]  record (or, without addr, forget) a node's address
//	raw hex=0203            apply these bytes as an entry
//	dump                    print the whole state
//	restore                 snapshot, restore into a new Machine, continue with it
//
// A name may be Go-quoted (name="a\nb"), and name-repeat=N repeats it N times.
// The clock starts at t+0s and advances one second per entry.
// After every entry the runner checks the invariants, that tokens strictly
// increase, and that a malformed entry changed nothing.
// Run with -rewrite to regenerate the expected output, then read the diff.
func TestTranscripts(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no transcripts in testdata: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			runTranscript(t, file)
		})
	}
}

var epoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

type transcript struct {
	m        *Machine
	entries  int    // entries applied; the clock
	maxToken uint64 // highest token granted so far
}

func runTranscript(t *testing.T, file string) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	tr := &transcript{m: New()}
	var out strings.Builder
	for i := 0; i < len(lines); {
		line := lines[i]
		if line == "" || strings.HasPrefix(line, "#") {
			out.WriteString(line + "\n")
			i++
			continue
		}
		pos := fmt.Sprintf("%s:%d", file, i+1)
		i++
		var want []string
		if i < len(lines) && lines[i] == "----" {
			for i++; i < len(lines) && lines[i] != ""; i++ {
				want = append(want, lines[i])
			}
		}
		got, err := tr.run(line)
		if err != nil {
			t.Fatalf("%s: %s: %v", pos, line, err)
		}
		fmt.Fprintf(&out, "%s\n----\n%s\n", line, got)
		if !*rewrite && got != strings.Join(want, "\n") {
			t.Errorf("%s: %s\ngot:\n%s\nwant:\n%s", pos, line, got, strings.Join(want, "\n"))
		}
	}
	if *rewrite {
		if err := os.WriteFile(file, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func (tr *transcript) run(line string) (string, error) {
	verb, a, err := parseArgs(line)
	if err != nil {
		return "", err
	}
	now := epoch.Add(time.Duration(tr.entries) * time.Second)
	var cmd Command
	var raw []byte
	switch verb {
	case "open":
		cmd = OpenSession{ID: a.optUint("id"), TTL: a.duration("ttl", 10*time.Second), Now: now}
	case "acquire":
		cmd = Acquire{Session: a.uint("s"), Seq: a.uint("seq"), AckedBelow: a.optUint("acked"), Name: a.name(),
			Wait: a.flag("wait"), LockDelay: a.duration("delay", 0), Now: now}
	case "release":
		cmd = Release{Session: a.uint("s"), Seq: a.uint("seq"), AckedBelow: a.optUint("acked"), Name: a.name(), Token: a.uint("token"), Now: now}
	case "cancel":
		cmd = Cancel{Session: a.uint("s"), Seq: a.uint("seq"), AckedBelow: a.optUint("acked"), Name: a.name(), Now: now}
	case "expire":
		cmd = ExpireSession{Session: a.uint("s"), Now: now}
	case "close":
		cmd = CloseSession{Session: a.uint("s"), Now: now}
	case "lift":
		cmd = LiftDelay{Name: a.name(), Generation: a.uint("gen"), Now: now}
	case "nop":
		cmd = Nop{}
	case "member":
		cmd = SetMember{ID: a.str("id"), Addr: a.optStr("addr")}
	case "raw":
		raw, err = hex.DecodeString(a.str("hex"))
		if err != nil {
			return "", err
		}
	case "dump":
		if err := a.finish(); err != nil {
			return "", err
		}
		return dump(tr.m), nil
	case "restore":
		if err := a.finish(); err != nil {
			return "", err
		}
		c, err := checkRoundTrip(tr.m)
		if err != nil {
			return "", err
		}
		tr.m = c
		return fmt.Sprintf("restored: last-token=%d, hash unchanged", c.LastToken()), nil
	default:
		return "", fmt.Errorf("unknown command %q", verb)
	}
	if err := a.finish(); err != nil {
		return "", err
	}
	if cmd != nil {
		raw = Encode(cmd)
	}
	return tr.apply(raw)
}

func (tr *transcript) apply(entry []byte) (string, error) {
	before := tr.m.Hash()
	res := tr.m.Apply(entry)
	tr.entries++
	if res.Code == CodeMalformed && tr.m.Hash() != before {
		return "", fmt.Errorf("a malformed entry changed the state")
	}
	if err := checkInvariants(tr.m); err != nil {
		return "", fmt.Errorf("invariant broken: %v", err)
	}
	lines := []string{res.String()}
	for _, e := range res.Events {
		if e.Kind == EventGranted {
			if e.Token <= tr.maxToken {
				return "", fmt.Errorf("token %d granted after token %d", e.Token, tr.maxToken)
			}
			tr.maxToken = e.Token
		}
		lines = append(lines, "> "+e.String())
	}
	return strings.Join(lines, "\n"), nil
}

// dump prints the whole state through the query methods, plus the request
// records, which only the snapshot shows.
func dump(m *Machine) string {
	at := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return "t+" + t.Sub(epoch).String()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "last-token=%d last-session=%d last-gen=%d", m.lastToken, m.lastSession, m.lastGen)
	for _, s := range m.Sessions() {
		fmt.Fprintf(&b, "\nsession %d: ttl=%s opened=%s acked-below=%d held=%q waiting=%q", s.ID, s.TTL, at(s.Opened), s.AckedBelow, s.Held, s.Waiting)
		for _, r := range m.sessions[s.ID].replies {
			res := Result{Status: r.status, Code: r.code, Token: r.token, Reason: r.reason}
			fmt.Fprintf(&b, "\n  record seq=%d %s %q: %s", r.seq, r.typ, r.name, res)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(m.members)) {
		fmt.Fprintf(&b, "\nmember %s: %s", id, m.members[id])
	}
	for _, l := range m.Locks() {
		if l.DelayGeneration != 0 {
			fmt.Fprintf(&b, "\nlock %q: delayed gen=%d delay=%s since=%s", l.Name, l.DelayGeneration, l.LockDelay, at(l.Since))
		} else {
			fmt.Fprintf(&b, "\nlock %q: holder=%d token=%d seq=%d delay=%s since=%s", l.Name, l.Holder, l.Token, l.Seq, l.LockDelay, at(l.Since))
		}
		for _, w := range l.Waiters {
			fmt.Fprintf(&b, "\n  waiter s=%d seq=%d delay=%s since=%s", w.Session, w.Seq, w.LockDelay, at(w.Since))
		}
	}
	return b.String()
}

// args are the key=value and bare-flag arguments of a transcript line.
type args struct {
	vals map[string]string
	used map[string]bool
	err  error
}

func parseArgs(line string) (string, *args, error) {
	verb, rest, _ := strings.Cut(line, " ")
	a := &args{vals: map[string]string{}, used: map[string]bool{}}
	for rest = strings.TrimSpace(rest); rest != ""; rest = strings.TrimSpace(rest) {
		key, val := rest, ""
		if i := strings.IndexAny(rest, "= "); i >= 0 && rest[i] == '=' {
			key, rest = rest[:i], rest[i+1:]
			if strings.HasPrefix(rest, `"`) {
				q, err := strconv.QuotedPrefix(rest)
				if err != nil {
					return "", nil, fmt.Errorf("argument %s: %v", key, err)
				}
				val, _ = strconv.Unquote(q)
				rest = rest[len(q):]
			} else {
				val, rest, _ = strings.Cut(rest, " ")
			}
		} else {
			key, rest, _ = strings.Cut(rest, " ")
		}
		if _, dup := a.vals[key]; dup {
			return "", nil, fmt.Errorf("argument %s given twice", key)
		}
		a.vals[key] = val
	}
	return verb, a, nil
}

func (a *args) get(key string) (string, bool) {
	v, ok := a.vals[key]
	a.used[key] = true
	return v, ok
}

func (a *args) setErr(err error) {
	if a.err == nil {
		a.err = err
	}
}

func (a *args) str(key string) string {
	v, ok := a.get(key)
	if !ok {
		a.setErr(fmt.Errorf("missing argument %s", key))
	}
	return v
}

func (a *args) uint(key string) uint64 {
	n, err := strconv.ParseUint(a.str(key), 10, 64)
	if err != nil {
		a.setErr(fmt.Errorf("argument %s: %v", key, err))
	}
	return n
}

func (a *args) optStr(key string) string {
	if _, ok := a.vals[key]; !ok {
		return ""
	}
	return a.str(key)
}

func (a *args) optUint(key string) uint64 {
	if _, ok := a.vals[key]; !ok {
		return 0
	}
	return a.uint(key)
}

func (a *args) duration(key string, def time.Duration) time.Duration {
	v, ok := a.get(key)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		a.setErr(fmt.Errorf("argument %s: %v", key, err))
	}
	return d
}

func (a *args) flag(key string) bool {
	v, ok := a.get(key)
	if ok && v != "" {
		a.setErr(fmt.Errorf("flag %s takes no value", key))
	}
	return ok
}

func (a *args) name() string {
	name := a.str("name")
	if _, ok := a.vals["name-repeat"]; ok {
		name = strings.Repeat(name, int(a.uint("name-repeat")))
	}
	return name
}

func (a *args) finish() error {
	for key := range a.vals {
		if !a.used[key] {
			a.setErr(fmt.Errorf("unknown argument %s", key))
		}
	}
	return a.err
}
