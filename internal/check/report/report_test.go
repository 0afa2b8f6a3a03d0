package report

import (
	"bufio"
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/internal/check/analyze"
	"github.com/fencerlock/fencer/internal/history"
	"github.com/fencerlock/fencer/internal/store"
	"github.com/fencerlock/fencer/server"
)

const base = history.Time(5_000_000_000_000)

func at(ms float64) history.Time { return base + history.Time(ms*1e6) }

// kleppmann is the 33/34 history: c1 gets 33 and pauses, c2 gets 34 and
// writes, c1 wakes and writes with 33. With fenced the store refuses it.
func kleppmann(scenario string, fenced bool, expected analyze.Expectation) *analyze.Run {
	vu := func(ms float64) map[string]string {
		return map[string]string{analyze.AttrValidUntil: strconv.FormatInt(int64(at(ms)), 10)}
	}
	ev := func(ms float64, p string, op uint64, k history.Kind, token uint64, value string, attrs map[string]string) history.Event {
		return history.Event{Time: at(ms), Process: p, Op: op, Kind: k, Lock: "L", Token: token, Value: value, Attrs: attrs}
	}
	last := ev(152, "c1", 3, history.WriteRejected, 33, "", map[string]string{analyze.AttrStatus: "409"})
	log := []store.Entry{
		{Seq: 1, Op: "get", Key: "L", Token: 33, Accepted: true, Floor: 33},
		{Seq: 2, Op: "get", Key: "L", Token: 34, Accepted: true, Floor: 34},
		{Seq: 3, Op: "put", Key: "L", Token: 34, Accepted: true, Floor: 34},
		{Seq: 4, Op: "put", Key: "L", Token: 33, Accepted: false, Floor: 34},
	}
	if !fenced {
		last = ev(152, "c1", 3, history.WriteOK, 33, "", nil)
		log[3] = store.Entry{Seq: 4, Op: "put", Key: "L", Token: 33, Accepted: true, Floor: 33}
	}
	return &analyze.Run{
		Scenario: scenario, Backend: "fencer", Expected: expected, Why: "token 33 after 34 must be refused",
		Predicts: []analyze.Violation{analyze.ViolationStaleAccepted}, StoreUnfenced: !fenced,
		History: []history.Event{
			ev(0, "c1", 1, history.AcquireInvoke, 0, "", nil),
			ev(1, "c1", 1, history.AcquireOK, 33, "", vu(100)),
			ev(2, "c1", 2, history.ReadInvoke, 33, "", nil),
			ev(3, "c1", 2, history.ReadOK, 0, "0", nil),
			ev(4, "c1", 0, history.Pause, 0, "", nil),
			ev(5, "c2", 1, history.AcquireInvoke, 0, "", nil),
			ev(110, "c2", 1, history.AcquireOK, 34, "", vu(210)),
			ev(111, "c2", 2, history.ReadInvoke, 34, "", nil),
			ev(112, "c2", 2, history.ReadOK, 0, "0", nil),
			ev(113, "c2", 3, history.WriteInvoke, 34, "1", nil),
			ev(114, "c2", 3, history.WriteOK, 34, "", nil),
			ev(115, "c2", 4, history.ReleaseInvoke, 34, "", nil),
			ev(116, "c2", 4, history.ReleaseOK, 0, "", nil),
			{Time: at(120), Process: "nemesis", Kind: history.FaultStart, Attrs: map[string]string{analyze.AttrFault: "partition", analyze.AttrTarget: "n2"}},
			{Time: at(140), Process: "nemesis", Kind: history.FaultEnd, Attrs: map[string]string{analyze.AttrFault: "partition", analyze.AttrTarget: "n2"}},
			ev(150, "c1", 0, history.Resume, 0, "", nil),
			ev(151, "c1", 3, history.WriteInvoke, 33, "1", nil),
			last,
			ev(153, "c1", 0, history.LeaseLost, 33, "", nil),
		},
		AcceptLog: log,
		Final:     analyze.FinalState{Counters: map[string]int64{"L": 1}},
		Replicas: []server.NodeState{
			{NodeID: "n1", AppliedIndex: 9, Hash: "ab"}, {NodeID: "n2", AppliedIndex: 9, Hash: "ab"}, {NodeID: "n3", AppliedIndex: 9, Hash: "ab"},
		},
	}
}

// twoLocks has two locks and a believed overlap on one of them, without
// tokens (Redlock).
func twoLocks() *analyze.Run {
	var evs []history.Event
	grant := func(p, lock string, op uint64, from, to, valid float64) {
		evs = append(evs,
			history.Event{Time: at(from), Process: p, Op: op, Kind: history.AcquireInvoke, Lock: lock},
			history.Event{Time: at(to), Process: p, Op: op, Kind: history.AcquireOK, Lock: lock,
				Attrs: map[string]string{analyze.AttrValidUntil: strconv.FormatInt(int64(at(valid)), 10)}})
	}
	grant("c1", "A", 1, 0, 1, 50)
	grant("c2", "A", 1, 2, 20, 80)
	grant("c3", "B", 1, 0, 1, 50)
	evs = append(evs,
		history.Event{Time: at(60), Process: "c1", Op: 2, Kind: history.ReleaseInvoke, Lock: "A"},
		history.Event{Time: at(61), Process: "c1", Op: 2, Kind: history.ReleaseFail, Lock: "A"},
		history.Event{Time: at(90), Process: "c2", Op: 2, Kind: history.ReleaseInvoke, Lock: "A"},
		history.Event{Time: at(91), Process: "c2", Op: 2, Kind: history.ReleaseOK, Lock: "A"})
	return &analyze.Run{Scenario: "redlock <clock> & jump", Backend: "redlock", Expected: analyze.ExpectViolation,
		Predicts: []analyze.Violation{analyze.ViolationBelievedOverlap}, History: evs}
}

func analyses(t *testing.T) []*analyze.Analysis {
	t.Helper()
	var out []*analyze.Analysis
	for _, r := range []*analyze.Run{
		kleppmann("pause-33-34", true, analyze.ExpectSafe),
		kleppmann("pause-33-34-unfenced", false, analyze.ExpectViolation),
		kleppmann("pause-33-34-unfenced-as-safe", false, analyze.ExpectSafe),
		twoLocks(),
		kleppmann("pause-33-34-fenced-as-violation", true, analyze.ExpectViolation),
	} {
		a, err := analyze.Analyze(r, nil)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, a)
	}
	return out
}

func TestWriteTable(t *testing.T) {
	as := analyses(t)
	var buf bytes.Buffer
	if err := WriteTable(&buf, Results(as)); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")
	t.Logf("\n%s", buf.String())
	if len(lines) != len(as)+3 {
		t.Fatalf("%d lines; want a header, %d rows, a blank line and the counts", len(lines), len(as))
	}
	if got, want := lines[len(lines)-1], "5 runs: 3 passed, 2 failed"; got != want {
		t.Fatalf("last line %q; want %q", got, want)
	}
	header := lines[0]
	var cols []int
	for _, h := range []string{"BACKEND", "EXPECTED", "OBSERVED", "VERDICT"} {
		i := strings.Index(header, h)
		if i < 0 {
			t.Fatalf("header %q lacks %s", header, h)
		}
		cols = append(cols, i)
	}
	for _, l := range lines[1 : len(as)+1] {
		if strings.Contains(l, "\t") {
			t.Fatalf("row %q has a tab", l)
		}
		for _, c := range cols {
			if len(l) <= c || l[c] == ' ' || l[c-1] != ' ' {
				t.Fatalf("row %q does not start a column at %d like the header:\n%s", l, c, header)
			}
		}
	}
	if !strings.Contains(lines[3], "FAIL") || !strings.HasSuffix(lines[1], "pass") {
		t.Fatalf("verdicts: %q, %q", lines[1], lines[3])
	}
}

// The JSON keys are the CLI's interface: check them exactly.
func TestWriteJSONKeys(t *testing.T) {
	as := analyses(t)
	var buf bytes.Buffer
	if err := WriteJSON(&buf, Results(as)); err != nil {
		t.Fatal(err)
	}
	want := []string{"backend", "expected", "linearizable", "lost_updates", "no_tokens", "observed", "overlaps",
		"reasons", "replicas_agree", "scenario", "stale_accepted", "stale_rejected", "token_regressions", "verdict", "why"}
	sc := bufio.NewScanner(&buf)
	n := 0
	for sc.Scan() {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %d: %v", n+1, err)
		}
		var keys []string
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		if !reflect.DeepEqual(keys, want) {
			t.Fatalf("line %d keys %v; want %v", n+1, keys, want)
		}
		var o struct{ Observed, Believed int }
		if err := json.Unmarshal(m["overlaps"], &o); err != nil {
			t.Fatalf("overlaps %s: %v", m["overlaps"], err)
		}
		switch n {
		case 0: // fenced 33/34
			assertJSON(t, m, map[string]string{"expected": `"safe"`, "verdict": `"pass"`, "stale_accepted": "0", "stale_rejected": "1",
				"lost_updates": "0", "token_regressions": "0", "linearizable": "true", "replicas_agree": "true",
				"overlaps": `{"observed":1,"believed":0}`})
		case 1: // unfenced demonstration
			assertJSON(t, m, map[string]string{"expected": `"violation"`, "verdict": `"pass"`, "stale_accepted": "1", "lost_updates": "1"})
		case 3: // Redlock: no tokens, no replicas
			assertJSON(t, m, map[string]string{"no_tokens": "true", "replicas_agree": "null", "linearizable": "null",
				"overlaps": `{"observed":1,"believed":1}`})
		}
		n++
	}
	if n != len(as) {
		t.Fatalf("%d lines; want %d", n, len(as))
	}
}

func assertJSON(t *testing.T, m map[string]json.RawMessage, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if string(m[k]) != v {
			t.Errorf("%s = %s; want %s", k, m[k], v)
		}
	}
}

// parseHTML checks that page is well-formed (every element closed, as
// XML with HTML's void elements and entities) and returns its element
// names in document order with their class attributes.
func parseHTML(t *testing.T, page []byte) []xml.StartElement {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(page))
	d.Strict = true
	d.AutoClose = xml.HTMLAutoClose
	d.Entity = xml.HTMLEntity
	var starts []xml.StartElement
	depth := 0
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("the HTML does not parse: %v", err)
		}
		switch tk := tok.(type) {
		case xml.StartElement:
			depth++
			starts = append(starts, tk.Copy())
		case xml.EndElement:
			depth--
		}
	}
	if depth != 0 {
		t.Fatalf("unbalanced elements: depth %d at the end", depth)
	}
	return starts
}

func attrOf(e xml.StartElement, name string) string {
	for _, a := range e.Attr {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

func TestWriteHTML(t *testing.T) {
	as := analyses(t)
	var buf bytes.Buffer
	link := func(i int, check string) string { return "viz-" + strconv.Itoa(i) + "-" + check + ".html" }
	if err := WriteHTML(&buf, as, &HTMLOptions{Title: "check <run>", VisualizationLink: link}); err != nil {
		t.Fatal(err)
	}
	page := buf.Bytes()
	elems := parseHTML(t, page)
	svgs, sections := 0, 0
	classes := map[string]int{}
	hrefs := map[string]bool{}
	for _, e := range elems {
		switch e.Name.Local {
		case "svg":
			svgs++
		case "section":
			sections++
		case "a":
			hrefs[attrOf(e, "href")] = true
		}
		if c := attrOf(e, "class"); c != "" {
			classes[c]++
		}
	}
	// One SVG per lock: L in each 33/34 run, A and B in the Redlock run.
	if sections != 5 || svgs != 4+2 {
		t.Fatalf("%d sections, %d SVGs; want 5 and 6", sections, svgs)
	}
	for _, c := range []string{"write accepted", "write rejected", "write stale-accepted", "lease-lost", "pause", "band fault", "observed", "believed"} {
		if classes[c] == 0 {
			t.Errorf("no element of class %q in the timelines (classes: %v)", c, classes)
		}
	}
	for _, h := range []string{"viz-0-store.html", "viz-0-lock.html", "#run-4"} {
		if !hrefs[h] {
			t.Errorf("no link to %s (links: %v)", h, hrefs)
		}
	}
	// The Redlock run has no tokens: no lock check, no link to one.
	if hrefs["viz-3-lock.html"] {
		t.Error("link to a lock check that was skipped")
	}
	s := string(page)
	for _, want := range []string{"check &lt;run&gt;", "redlock &lt;clock&gt; &amp; jump", "did not reproduce", "reproduced: 1 stale request accepted",
		"the store refused put of L with stale token 33", "no tokens", "believed overlap"} {
		if !strings.Contains(s, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	if strings.Contains(s, "<script") || strings.Contains(s, "http://") && !strings.Contains(s, `xmlns="http://www.w3.org/2000/svg"`) {
		t.Error("the page has scripts or external references")
	}
}

func TestWriteDir(t *testing.T) {
	as := analyses(t)
	dir := filepath.Join(t.TempDir(), "out")
	files, err := WriteDir(dir, as)
	if err != nil {
		t.Fatal(err)
	}
	// Store and lock checks of the four 33/34 runs; the Redlock run has
	// neither reads and writes nor tokens.
	if len(files.Visualizations) != 8 {
		t.Fatalf("visualizations %v; want 8", files.Visualizations)
	}
	index, err := os.ReadFile(files.Index)
	if err != nil {
		t.Fatal(err)
	}
	parseHTML(t, index)
	for _, v := range files.Visualizations {
		b, err := os.ReadFile(v)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte("Porcupine")) {
			t.Errorf("%s is not a porcupine visualization", v)
		}
		if !bytes.Contains(index, []byte(`href="`+filepath.Base(v)+`"`)) {
			t.Errorf("index.html does not link to %s", filepath.Base(v))
		}
	}
	if want := "01-pause-33-34-fencer-store.html"; filepath.Base(files.Visualizations[0]) != want {
		t.Errorf("first visualization %s; want %s", filepath.Base(files.Visualizations[0]), want)
	}
	res, err := os.ReadFile(files.Results)
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(res, []byte("\n")); n != len(as) {
		t.Fatalf("results.jsonl has %d lines; want %d", n, len(as))
	}
	if _, err := WriteDir(filepath.Join(files.Index, "sub"), as); err == nil {
		t.Fatal("WriteDir under a file: no error")
	}
}

func TestFileSafe(t *testing.T) {
	if got := fileSafe("redlock <clock> & jump/1"); got != "redlock__clock____jump_1" {
		t.Fatalf("fileSafe = %q", got)
	}
}

// keep the fencer import for Token in store entries honest.
var _ = fencer.Token(0)
