package history

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// helperEnv selects what the test binary does when re-executed as a helper.
const helperEnv = "FENCER_HISTORY_HELPER"

// TestHelperProcess is not a test: it is the body of the helper processes
// the tests start by re-executing the test binary.
func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		t.Skip("helper process only")
	}
	err := helper(mode, os.Getenv("FENCER_HISTORY_FILE"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(2)
	}
	os.Exit(0)
}

func helper(mode, path string) error {
	r, err := Create(path, &Options{Process: "child"})
	if err != nil {
		return err
	}
	in := bufio.NewScanner(os.Stdin)
	out := bufio.NewWriter(os.Stdout)
	switch mode {
	case "echo":
		// For every line "i" from the parent: record an event and answer
		// with its time.
		for in.Scan() {
			t := Now()
			if err := r.Record(Event{Time: t, Kind: "probe", Value: in.Text()}); err != nil {
				return err
			}
			fmt.Fprintln(out, int64(t))
			out.Flush()
		}
		return r.Close()
	case "spin":
		// Record "acked" events 0..n-1 and say so, then keep recording
		// "noise" as fast as possible until killed.
		n, _ := strconv.Atoi(os.Getenv("FENCER_HISTORY_N"))
		for i := 0; i < n; i++ {
			if err := r.Record(Event{Kind: "acked", Value: strconv.Itoa(i)}); err != nil {
				return err
			}
		}
		fmt.Fprintln(out, "recorded")
		out.Flush()
		for i := 0; ; i++ {
			if err := r.Record(Event{Kind: "noise", Value: strings.Repeat("x", i%300)}); err != nil {
				return err
			}
		}
	}
	return fmt.Errorf("unknown helper mode %q", mode)
}

func startHelper(t *testing.T, mode, path string, env ...string) (*exec.Cmd, io.WriteCloser, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, "FENCER_HISTORY_FILE="+path)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd, stdin, bufio.NewScanner(stdout)
}

// TestNowAcrossProcesses checks that Now in another process falls between
// two readings of this one, for many rounds, both from the raw readings and
// from the merged history files.
func TestNowAcrossProcesses(t *testing.T) {
	dir := t.TempDir()
	childPath := filepath.Join(dir, "child.jsonl")
	parentPath := filepath.Join(dir, "parent.jsonl")
	cmd, stdin, out := startHelper(t, "echo", childPath)
	in := bufio.NewWriter(stdin)
	rec, err := Create(parentPath, &Options{Process: "parent"})
	if err != nil {
		t.Fatal(err)
	}
	const rounds = 200
	for i := 0; i < rounds; i++ {
		before := Now()
		if err := rec.Record(Event{Time: before, Kind: "before", Value: strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintln(in, i)
		if err := in.Flush(); err != nil {
			t.Fatal(err)
		}
		if !out.Scan() {
			t.Fatalf("helper stopped answering: %v", out.Err())
		}
		child, err := strconv.ParseInt(out.Text(), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		after := Now()
		if err := rec.Record(Event{Time: after, Kind: "after", Value: strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
		if !(before < Time(child) && Time(child) < after) {
			t.Fatalf("round %d: child read %v, not between the parent's %v and %v", i, Time(child), before, after)
		}
	}
	if err := rec.Close(); err != nil {
		t.Fatal(err)
	}
	// Closing stdin ends the helper, which closes its recorder.
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}

	events, torn, err := Merge(parentPath, childPath)
	if err != nil {
		t.Fatal(err)
	}
	if torn != 0 || len(events) != 3*rounds {
		t.Fatalf("merged %d events, %d torn; want %d, 0", len(events), torn, 3*rounds)
	}
	for i := 0; i < rounds; i++ {
		want := []string{"parent/before", "child/probe", "parent/after"}
		for j, w := range want {
			e := events[3*i+j]
			if got := e.Process + "/" + string(e.Kind); got != w || e.Value != strconv.Itoa(i) {
				t.Fatalf("event %d is %s value %s; want %s value %d", 3*i+j, got, e.Value, w, i)
			}
		}
	}
}

// TestConcurrentRecorders writes from many goroutines and checks that every
// event arrives whole, and that each goroutine's events are in order.
func TestConcurrentRecorders(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.jsonl")
	r, err := Create(path, &Options{Process: "p", BufferSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 8, 2000
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				e := Event{
					Op:    r.NextOp(),
					Kind:  WriteInvoke,
					Lock:  "L" + strconv.Itoa(w),
					Token: uint64(i + 1),
					Value: strings.Repeat("v", i%50),
					Attrs: map[string]string{"writer": strconv.Itoa(w)},
				}
				if err := r.Record(e); err != nil {
					t.Error(err)
					return
				}
				if i%500 == 0 {
					if err := r.Flush(); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close: %v; want ErrClosed", err)
	}
	if err := r.Record(Event{Kind: ReadOK}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Record after Close: %v; want ErrClosed", err)
	}
	events, torn, err := ReadFile(path)
	if err != nil || torn {
		t.Fatalf("ReadFile: torn=%v err=%v", torn, err)
	}
	if len(events) != writers*each {
		t.Fatalf("read %d events; want %d", len(events), writers*each)
	}
	ops := map[uint64]bool{}
	next := map[string]uint64{}
	var last Time
	for _, e := range events {
		if ops[e.Op] || e.Op == 0 {
			t.Fatalf("op %d repeated or zero", e.Op)
		}
		ops[e.Op] = true
		if e.Token != next[e.Lock]+1 {
			t.Fatalf("writer %s: token %d after %d", e.Lock, e.Token, next[e.Lock])
		}
		next[e.Lock] = e.Token
		if e.Time < last {
			t.Fatalf("times go back in one file: %v after %v", e.Time, last)
		}
		last = e.Time
		if e.Process != "p" || e.Attrs["writer"] != strings.TrimPrefix(e.Lock, "L") {
			t.Fatalf("event garbled: %+v", e)
		}
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMergeOrder(t *testing.T) {
	dir := t.TempDir()
	a := writeFile(t, dir, "a", `{"time":30,"process":"a","kind":"x","value":"a30"}
{"time":10,"process":"a","kind":"x","value":"a10"}
{"time":20,"process":"a","kind":"x","value":"a20-1"}
{"time":20,"process":"a","kind":"x","value":"a20-2"}
`)
	b := writeFile(t, dir, "b", `{"time":20,"process":"b","kind":"x","value":"b20"}

{"time":5,"process":"b","kind":"x","value":"b5"}
{"time":40,"process":"b","kind":"x","value":"b40","unknown":"ignored"}
`)
	events, torn, err := Merge(a, b)
	if err != nil || torn != 0 {
		t.Fatalf("Merge: torn=%d err=%v", torn, err)
	}
	var got []string
	for _, e := range events {
		got = append(got, e.Value)
	}
	want := "b5 a10 a20-1 a20-2 b20 a30 b40"
	if strings.Join(got, " ") != want {
		t.Fatalf("merged order %v; want %s", got, want)
	}
	// Swapping the files swaps the order of equal times only.
	events, _, _ = Merge(b, a)
	got = got[:0]
	for _, e := range events {
		got = append(got, e.Value)
	}
	if want := "b5 a10 b20 a20-1 a20-2 a30 b40"; strings.Join(got, " ") != want {
		t.Fatalf("merged order %v; want %s", got, want)
	}
}

func TestTornAndBrokenLines(t *testing.T) {
	dir := t.TempDir()
	good := `{"time":1,"process":"a","kind":"x"}` + "\n"
	tests := []struct {
		name    string
		content string
		events  int
		torn    bool
		wantErr string
	}{
		{"clean", good + good, 2, false, ""},
		{"empty", "", 0, false, ""},
		{"torn JSON", good + `{"time":2,"proc`, 1, true, ""},
		{"whole object without newline", good + `{"time":2,"process":"a","kind":"x"}`, 1, true, ""},
		{"broken middle line", good + `{"time":2,"proc` + "\n" + good, 0, false, "line 2 is not a JSON event"},
		{"no kind", good + `{"time":2,"process":"a"}` + "\n", 0, false, "line 2 has no kind"},
	}
	var paths []string
	tornFiles := 0
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := writeFile(t, dir, strconv.Itoa(i), tc.content)
			events, torn, err := ReadFile(p)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), p) {
					t.Fatalf("err = %v; want one naming %s and saying %q", err, p, tc.wantErr)
				}
				return
			}
			if err != nil || torn != tc.torn || len(events) != tc.events {
				t.Fatalf("got %d events, torn=%v, err=%v; want %d, %v", len(events), torn, err, tc.events, tc.torn)
			}
			paths = append(paths, p)
			if torn {
				tornFiles++
			}
		})
	}
	_, torn, err := Merge(paths...)
	if err != nil || torn != tornFiles {
		t.Fatalf("Merge: torn=%d err=%v; want %d, nil", torn, err, tornFiles)
	}
	if _, _, err := ReadFile(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("ReadFile of a missing file: no error")
	}
}

// TestKilledWriter kills a process that records as fast as it can and
// checks that its file still merges, and that what it recorded well before
// the kill is there.
func TestKilledWriter(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "killed.jsonl")
	const acked = 1000
	cmd, _, out := startHelper(t, "spin", path, "FENCER_HISTORY_N="+strconv.Itoa(acked))
	if !out.Scan() || out.Text() != "recorded" {
		t.Fatalf("helper did not report: %q %v", out.Text(), out.Err())
	}
	// Far longer than the flush interval, even on a loaded machine.
	time.Sleep(300 * time.Millisecond)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	events, torn, err := Merge(path)
	if err != nil {
		t.Fatalf("Merge of a killed writer's file: %v", err)
	}
	n := 0
	for _, e := range events {
		if e.Kind == "acked" {
			if e.Value != strconv.Itoa(n) {
				t.Fatalf("acked event %d has value %s", n, e.Value)
			}
			n++
		}
	}
	if n != acked {
		t.Fatalf("found %d of the %d events recorded 300ms before the kill", n, acked)
	}
	t.Logf("killed writer: %d events, torn last line: %d", len(events), torn)
}

func TestCreateAndRecordErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "h.jsonl")
	r, err := Create(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := Create(path, nil); err == nil || !strings.Contains(err.Error(), "file of its own") {
		t.Fatalf("second Create of one path: %v; want an error saying each process needs its own file", err)
	}
	if err := r.Record(Event{Kind: AcquireInvoke}); err == nil {
		t.Fatal("Record without a process: no error")
	}
	if err := r.Record(Event{Process: "c1"}); err == nil {
		t.Fatal("Record without a kind: no error")
	}
	if _, err := Create(filepath.Join(dir, "x"), &Options{FlushInterval: -1}); err == nil {
		t.Fatal("negative FlushInterval: no error")
	}
	if _, err := Create(filepath.Join(dir, "no", "such", "dir"), nil); err == nil {
		t.Fatal("Create in a missing directory: no error")
	}
}

// TestFlushInterval checks that an event reaches the file without Flush or
// Close, soon after it was recorded.
func TestFlushInterval(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.jsonl")
	r, err := Create(path, &Options{Process: "p"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for round := range 3 {
		if err := r.Record(Event{Kind: Pause, Value: strconv.Itoa(round)}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			events, _, err := ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if len(events) == round+1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: event not in the file after 5s", round)
			}
			time.Sleep(time.Millisecond)
		}
	}
}

func TestTimeString(t *testing.T) {
	for _, tc := range []struct {
		t    Time
		want string
	}{{0, "0.000000000"}, {1, "0.000000001"}, {12_345_000_000_042, "12345.000000042"}, {-1_500_000_000, "-1.500000000"}} {
		if got := tc.t.String(); got != tc.want {
			t.Errorf("Time(%d).String() = %s; want %s", int64(tc.t), got, tc.want)
		}
	}
	a := Now()
	if b := Now(); b < a || b.Sub(a) > time.Second {
		t.Fatalf("Now went from %v to %v", a, b)
	}
}

func BenchmarkNow(b *testing.B) {
	for b.Loop() {
		Now()
	}
}

func BenchmarkRecord(b *testing.B) {
	r, err := Create(filepath.Join(b.TempDir(), "h.jsonl"), &Options{Process: "c1"})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	e := Event{Kind: WriteInvoke, Lock: "L", Token: 33, Value: "v"}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := r.Record(e); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
