package wal

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

const testMagic = "WALTEST1"

func openT(t *testing.T, path string, opts Options) (*Log, [][]byte) {
	t.Helper()
	if opts.Magic == "" {
		opts.Magic = testMagic
	}
	var recs [][]byte
	l, err := Open(path, opts, func(rec []byte) error {
		recs = append(recs, bytes.Clone(rec))
		return nil
	})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l, recs
}

func appendWait(t *testing.T, l *Log, rec string) {
	t.Helper()
	tk, err := l.Append([]byte(rec))
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	if err := l.Wait(context.Background(), tk); err != nil {
		t.Fatalf("Wait: %v", err)
	}
}

func strs(recs [][]byte) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = string(r)
	}
	return out
}

func TestReopenReplaysInOrder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "log")
	l, recs := openT(t, path, Options{})
	if len(recs) != 0 {
		t.Fatalf("new log replayed %q", strs(recs))
	}
	for i := range 5 {
		appendWait(t, l, fmt.Sprint("rec", i))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	_, recs = openT(t, path, Options{})
	if got, want := fmt.Sprint(strs(recs)), "[rec0 rec1 rec2 rec3 rec4]"; got != want {
		t.Fatalf("replayed %s, want %s", got, want)
	}
}

func TestSecondOpenFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	openT(t, path, Options{})
	if _, err := Open(path, Options{Magic: testMagic}, func([]byte) error { return nil }); err == nil {
		t.Fatal("a second Open of the same file succeeded")
	}
}

func TestWrongMagic(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	l, _ := openT(t, path, Options{})
	l.Close()
	_, err := Open(path, Options{Magic: "OTHERMAG"}, func([]byte) error { return nil })
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open with another magic: %v, want ErrCorrupt", err)
	}
}

func TestReplayErrorAbortsOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	l, _ := openT(t, path, Options{})
	appendWait(t, l, "x")
	l.Close()
	boom := errors.New("cannot decode")
	_, err := Open(path, Options{Magic: testMagic}, func([]byte) error { return boom })
	if !errors.Is(err, boom) || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open: %v, want it to wrap the replay error and ErrCorrupt", err)
	}
}

// TestTail damages the end of a log in the ways a crash can and checks
// that Open keeps every record before the damage, and refuses a file
// damaged in the middle.
func TestTail(t *testing.T) {
	frame := AppendFrame(nil, []byte("last record"))
	tests := []struct {
		name    string
		damage  func(b []byte) []byte // applied to the file after rec0..rec2
		want    string
		corrupt bool
	}{
		{"intact", func(b []byte) []byte { return b }, "[rec0 rec1 rec2]", false},
		{"half a header", func(b []byte) []byte { return append(b, frame[:5]...) }, "[rec0 rec1 rec2]", false},
		{"half a payload", func(b []byte) []byte { return append(b, frame[:len(frame)-3]...) }, "[rec0 rec1 rec2]", false},
		{"zeros", func(b []byte) []byte { return append(b, make([]byte, 4096)...) }, "[rec0 rec1 rec2]", false},
		{"bad checksum", func(b []byte) []byte {
			f := bytes.Clone(frame)
			f[len(f)-1] ^= 1
			return append(b, f...)
		}, "[rec0 rec1 rec2]", false},
		{"huge length", func(b []byte) []byte {
			return binary.LittleEndian.AppendUint32(b, 1<<31)
		}, "[rec0 rec1 rec2]", false},
		{"last record cut", func(b []byte) []byte { return b[:len(b)-1] }, "[rec0 rec1]", false},
		// After a power loss, the unsynced last batch can come back with
		// any of its pages zeroed and the others intact.
		{"batch zeroed at its start", func(b []byte) []byte {
			f := AppendFrame(nil, []byte("a"), []byte("intact record b"), []byte("intact record c"))
			clear(f[:12])
			return append(b, f...)
		}, "[rec0 rec1 rec2]", false},
		{"batch zeroed in its middle", func(b []byte) []byte {
			f := AppendFrame(nil, []byte("first record"), []byte("second record"), []byte("third record"))
			clear(f[20:30])
			return append(b, f...)
		}, "[rec0 rec1 rec2]", false},
		{"middle record damaged", func(b []byte) []byte {
			b = bytes.Clone(b)
			b[8+frameHeader+1] ^= 0xff // inside rec0's payload
			return b
		}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "log")
			l, _ := openT(t, path, Options{})
			for i := range 3 {
				appendWait(t, l, fmt.Sprint("rec", i))
			}
			l.Close()
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, tt.damage(b), 0o600); err != nil {
				t.Fatal(err)
			}
			var recs [][]byte
			l2, err := Open(path, Options{Magic: testMagic}, func(r []byte) error {
				recs = append(recs, bytes.Clone(r))
				return nil
			})
			if tt.corrupt {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("Open: %v, want ErrCorrupt", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if got := fmt.Sprint(strs(recs)); got != tt.want {
				t.Fatalf("replayed %s, want %s", got, tt.want)
			}
			// The log goes on after the cut, and the next Open sees
			// the new record right after the good ones.
			appendWait(t, l2, "after")
			l2.Close()
			_, recs = openT(t, path, Options{})
			if got, want := fmt.Sprint(strs(recs)), tt.want[:len(tt.want)-1]+" after]"; got != want {
				t.Fatalf("after a reopen: replayed %s, want %s", got, want)
			}
		})
	}
}

func TestGroupCommit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	l, _ := openT(t, path, Options{})
	const writers, each = 16, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				tk, err := l.Append([]byte(fmt.Sprintf("%d/%d", w, i)))
				if err == nil {
					err = l.Wait(context.Background(), tk)
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	st := l.Stats()
	if st.Records != writers*each {
		t.Fatalf("Records = %d, want %d", st.Records, writers*each)
	}
	if st.Syncs >= st.Records {
		t.Errorf("%d syncs for %d records: no batching", st.Syncs, st.Records)
	}
	t.Logf("%d records in %d fsyncs", st.Records, st.Syncs)
	l.Close()
	_, recs := openT(t, path, Options{})
	if len(recs) != writers*each {
		t.Fatalf("replayed %d records, want %d", len(recs), writers*each)
	}
	// Each writer's records are in its order.
	next := make(map[int]int)
	for _, r := range recs {
		var w, i int
		fmt.Sscanf(string(r), "%d/%d", &w, &i)
		if next[w] != i {
			t.Fatalf("writer %d: record %d replayed before %d", w, i, next[w])
		}
		next[w]++
	}
}

// TestCompaction keeps a counter map whose snapshot is one record per key
// and checks that rewrites keep the state and shrink the file.
func TestCompaction(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	var mu sync.Mutex
	state := map[string]string{}
	opts := Options{
		CompactAt: 4 << 10,
		Snapshot: func(emit func([]byte)) error {
			mu.Lock()
			defer mu.Unlock()
			for k, v := range state {
				emit([]byte(k + "=" + v))
			}
			return nil
		},
	}
	l, _ := openT(t, path, opts)
	for i := range 2000 {
		k, v := fmt.Sprint("k", i%10), fmt.Sprint(i)
		mu.Lock()
		state[k] = v
		tk, err := l.Append([]byte(k + "=" + v))
		mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Wait(context.Background(), tk); err != nil {
			t.Fatal(err)
		}
	}
	st := l.Stats()
	if st.Compactions == 0 {
		t.Fatalf("no compaction: %+v", st)
	}
	if st.Size > 3*opts.CompactAt {
		t.Errorf("size %d after compactions, want at most %d", st.Size, 3*opts.CompactAt)
	}
	l.Close()
	fi, _ := os.Stat(path)
	if fi.Size() != st.Size {
		t.Errorf("file is %d bytes, Stats said %d", fi.Size(), st.Size)
	}
	_, recs := openT(t, path, Options{Magic: testMagic})
	got := map[string]string{}
	for _, r := range recs {
		k, v, _ := bytes.Cut(r, []byte("="))
		got[string(k)] = string(v)
	}
	if fmt.Sprint(got) != fmt.Sprint(state) {
		t.Fatalf("replayed %v, want %v", got, state)
	}
}

func TestClosed(t *testing.T) {
	l, _ := openT(t, filepath.Join(t.TempDir(), "log"), Options{})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v, want ErrClosed", err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestAppendLimits(t *testing.T) {
	l, _ := openT(t, filepath.Join(t.TempDir(), "log"), Options{MaxRecord: 10})
	for _, n := range []int{0, 11} {
		if _, err := l.Append(make([]byte, n)); err == nil {
			t.Errorf("Append of %d bytes succeeded; MaxRecord is 10", n)
		}
	}
}

func TestWaitCanceled(t *testing.T) {
	l, _ := openT(t, filepath.Join(t.TempDir(), "log"), Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	tk, err := l.Append([]byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	err = l.Wait(ctx, tk)
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait with a canceled context: %v", err)
	}
	if err := l.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// FuzzDecodeFrame checks that the frame decoder never panics or reads past
// its input, that what it accepts re-encodes to itself, and that what
// AppendFrame encodes decodes to the same records.
func FuzzDecodeFrame(f *testing.F) {
	f.Add(AppendFrame(nil, []byte("hello")))
	f.Add(AppendFrame(nil, []byte{0}, []byte("two"), []byte("three")))
	f.Add(make([]byte, 16))
	f.Add([]byte{2, 0, 0, 0, 0, 0, 0, 0, 1, 'x'})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4})
	opts := &Options{MaxRecord: 1 << 10}
	f.Fuzz(func(t *testing.T, b []byte) {
		if p, n, ok := DecodeFrame(b, 1<<12); ok {
			if n > len(b) || n != frameHeader+len(p) {
				t.Fatalf("DecodeFrame(%x) = %d bytes, payload %d", b, n, len(p))
			}
			if recs, err := SplitRecords(p, 1<<10); err == nil {
				if !bytes.Equal(AppendFrame(nil, recs...), b[:n]) {
					t.Fatalf("re-encoding %x differs", b[:n])
				}
			}
		}
		// b as records: split it into pieces and frame them.
		var recs [][]byte
		for rest := b; len(rest) > 0; {
			k := min(len(rest), 1+int(rest[0])%7)
			recs = append(recs, rest[:k])
			rest = rest[k:]
		}
		if len(recs) > 0 {
			frame := AppendFrame(nil, recs...)
			p, n, ok := DecodeFrame(frame, len(frame))
			got, err := SplitRecords(p, 1<<10)
			if !ok || err != nil || len(got) != len(recs) || n != frameHeader+len(p) {
				t.Fatalf("round trip of %q: %v %v %q", recs, ok, err, got)
			}
			for i := range recs {
				if !bytes.Equal(got[i], recs[i]) {
					t.Fatalf("round trip of %q gave %q", recs, got)
				}
			}
		}
		_ = findFrame(b, opts)
	})
}

// TestLargeBatches appends more than a frame holds at once and records as
// large as MaxRecord, and checks they come back.
func TestLargeBatches(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	l, _ := openT(t, path, Options{MaxRecord: 5 << 20})
	var tickets []Ticket
	sizes := []int{5 << 20, 1, 3 << 20, 3 << 20, 100, 5 << 20}
	for i, n := range sizes {
		tk, err := l.Append(bytes.Repeat([]byte{byte('a' + i)}, n))
		if err != nil {
			t.Fatal(err)
		}
		tickets = append(tickets, tk)
	}
	for _, tk := range tickets {
		if err := l.Wait(context.Background(), tk); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	_, recs := openT(t, path, Options{MaxRecord: 5 << 20})
	if len(recs) != len(sizes) {
		t.Fatalf("replayed %d records, want %d", len(recs), len(sizes))
	}
	for i, r := range recs {
		if len(r) != sizes[i] || r[0] != byte('a'+i) {
			t.Fatalf("record %d: %d bytes of %q, want %d of %q", i, len(r), r[0], sizes[i], byte('a'+i))
		}
	}
}
