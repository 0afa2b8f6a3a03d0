package fence_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/fence"
	"github.com/fencerlock/fencer/internal/testutil"
)

func TestFileStoreReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "floors")
	ctx := context.Background()
	s := openFile(t, path, nil)
	for _, r := range []struct {
		res string
		tok fencer.Token
	}{{"a", 5}, {"b", 7}, {"a", 9}, {"a", 6}, {"c", 1 << 63}} {
		if _, _, err := s.Raise(ctx, r.res, r.tok); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Raise(ctx, "a", 10); !errors.Is(err, fence.ErrClosed) {
		t.Fatalf("Raise after Close: %v, want ErrClosed", err)
	}
	s = openFile(t, path, nil)
	for res, want := range map[string]fencer.Token{"a": 9, "b": 7, "c": 1 << 63, "d": 0} {
		if got, err := s.Load(ctx, res); err != nil || got != want {
			t.Errorf("after reopen: Load(%q) = %d, %v; want %d", res, got, err, want)
		}
	}
	if _, err := fence.OpenFileStore(path, nil); err == nil {
		t.Fatal("a second OpenFileStore of an open file succeeded")
	}
}

func TestFileStoreCompaction(t *testing.T) {
	path := filepath.Join(t.TempDir(), "floors")
	ctx := context.Background()
	const compactAt = 4 << 10
	s := openFile(t, path, &fence.FileOptions{CompactAt: compactAt})
	var mu sync.Mutex
	want := map[string]fencer.Token{}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			// Long names make the file grow fast; one resource per
			// worker keeps the tokens of each in order.
			res := fmt.Sprintf("%s-%d", strings.Repeat("resource", 12), w)
			for i := range 120 {
				tok := fencer.Token(i + 1)
				if _, ok, err := s.Raise(ctx, res, tok); err != nil || !ok {
					t.Errorf("Raise(%q, %d) = %v, %v", res, tok, ok, err)
					return
				}
			}
			mu.Lock()
			want[res] = 120
			mu.Unlock()
		})
	}
	wg.Wait()
	st := s.Stats()
	if st.Compactions == 0 || st.Size > 3*compactAt {
		t.Fatalf("stats %+v: want compactions and a file of at most %d bytes", st, 3*compactAt)
	}
	s.Close()
	s = openFile(t, path, nil)
	for res, tok := range want {
		if got, _ := s.Load(ctx, res); got != tok {
			t.Errorf("after compaction and reopen: Load(%q) = %d, want %d", res, got, tok)
		}
	}
}

func TestFileStoreNotAFloorFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "floors")
	if err := os.WriteFile(path, []byte("something else entirely"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := fence.OpenFileStore(path, nil); err == nil {
		t.Fatal("OpenFileStore of a foreign file succeeded")
	}
}

// raiseHelper runs in a child process (FENCE_TEST_HELPER=raise): it raises
// floors of a few resources from many goroutines, as fast as it can, and
// prints "resource token" for every raise acknowledged as accepted, until
// it is killed.
func raiseHelper() int {
	s, err := fence.OpenFileStore(os.Getenv("FENCE_TEST_PATH"), nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var next [4]atomic.Uint64 // the "lock service": a token counter per resource
	var out sync.Mutex
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := 0; ; i++ {
				r := (w + i) % len(next)
				tok := fencer.Token(next[r].Add(1))
				res := fmt.Sprint("res", r)
				_, ok, err := s.Raise(context.Background(), res, tok)
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				if ok {
					out.Lock()
					fmt.Fprintf(os.Stdout, "%s %d\n", res, tok) // unbuffered: printed = acknowledged
					out.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return 0
}

// TestFileStoreSurvivesKill kills a process that raises floors with
// SIGKILL in mid-run and checks that every floor it acknowledged is in the
// file, then that a torn tail appended to the file is tolerated.
func TestFileStoreSurvivesKill(t *testing.T) {
	path := filepath.Join(t.TempDir(), "floors")
	acked := map[string]fencer.Token{}
	for round := range 3 { // reopening a file a killed process left behind
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "FENCE_TEST_HELPER=raise", "FENCE_TEST_PATH="+path)
		cmd.Stdout = w
		p := testutil.Start(t, fmt.Sprint("raise-helper-", round), cmd)
		w.Close()
		br := bufio.NewReader(r)
		n := 0
		deadline := time.Now().Add(20 * time.Second)
		killed := false
		for {
			line, err := br.ReadString('\n')
			if err == io.EOF {
				break // the partial last line, if any, was never acknowledged
			}
			if err != nil {
				t.Fatal(err)
			}
			var res string
			var tok fencer.Token
			if _, err := fmt.Sscanf(line, "%s %d", &res, &tok); err != nil {
				t.Fatalf("helper printed %q", line)
			}
			acked[res] = max(acked[res], tok)
			if n++; !killed && (n == 2000 || time.Now().After(deadline)) {
				p.Kill() // SIGKILL; keep reading what it printed before
				killed = true
			}
		}
		r.Close()
		if !killed {
			t.Fatalf("the helper exited on its own after %d acks: %v\n%s", n, p.ExitErr(), p.LogTail(2000))
		}
		s := openFile(t, path, nil)
		for res, tok := range acked {
			if got, err := s.Load(context.Background(), res); err != nil || got < tok {
				t.Fatalf("round %d: after kill -9: floor of %q = %d, %v; the helper acknowledged %d", round, res, got, err, tok)
			}
		}
		t.Logf("round %d: %d acknowledged raises survived; %+v", round, n, s.Stats())
		s.Close()
	}

	// A crash during a write can leave half a record; the disk can leave
	// garbage. Neither was acknowledged.
	for _, tail := range []string{"\x20\x00\x00\x00\x01\x02", strings.Repeat("\x00", 100), "\xff\xff\xff\xff garbage"} {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(tail)
		f.Close()
		s := openFile(t, path, nil)
		if st := s.Stats(); st.TornBytes != int64(len(tail)) {
			t.Errorf("torn tail %q: TornBytes = %d", tail, st.TornBytes)
		}
		for res, tok := range acked {
			if got, _ := s.Load(context.Background(), res); got < tok {
				t.Fatalf("torn tail %q: floor of %q = %d, want at least %d", tail, res, got, tok)
			}
		}
		s.Close()
	}
}
