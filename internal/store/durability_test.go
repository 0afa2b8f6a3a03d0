package store_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fencerlock/fencer/internal/store"
	"github.com/fencerlock/fencer/internal/testutil"
)

// TestMain lets the test binary double as a store server process
// (FENCER_STORE_HELPER_DIR set), which a test kills with SIGKILL. Tests
// end with a check for leaked goroutines.
func TestMain(m *testing.M) {
	if dir := os.Getenv("FENCER_STORE_HELPER_DIR"); dir != "" {
		os.Exit(serveHelper(dir))
	}
	goleak.VerifyTestMain(m)
}

// serveHelper serves a store on dir until SIGTERM, after printing
// "listening ADDR".
func serveHelper(dir string) int {
	s, err := store.Open(store.Config{DataDir: dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer s.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("listening %s\n", ln.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := s.Serve(ctx, ln); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// startHelper starts a store process on dir and returns it and a client.
func startHelper(t *testing.T, dir, name string) (*testutil.Proc, *client) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "FENCER_STORE_HELPER_DIR="+dir)
	cmd.Stdout = w
	p := testutil.Start(t, name, cmd)
	w.Close()
	t.Cleanup(func() { r.Close() })
	lines := make(chan string, 1)
	go func() { // ends when the process exits and the pipe closes
		line, _ := bufio.NewReader(r).ReadString('\n')
		lines <- line
	}()
	select {
	case line := <-lines:
		addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening ")
		if !ok {
			t.Fatalf("%s printed %q\n%s", name, line, p.LogTail(2000))
		}
		tr := &http.Transport{MaxIdleConnsPerHost: 64}
		t.Cleanup(tr.CloseIdleConnections)
		return p, &client{t: t, base: "http://" + addr, http: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not start\n%s", name, p.LogTail(2000))
	}
	return nil, nil
}

// TestDurabilityKill9 writes to a store process, kills it with SIGKILL
// while writers are busy, restarts it on the same directory and checks
// that every acknowledged write and floor survived: values are there,
// and stale tokens are still refused.
func TestDurabilityKill9(t *testing.T) {
	dir := t.TempDir()
	p, c := startHelper(t, dir, "store-1")

	// The 33/34 story, then a floor raised by a read of a missing key.
	steps := []struct {
		method, key, token, body string
		code                     int
	}{
		{"PUT", "story", "33", "from 33", 204},
		{"PUT", "story", "34", "from 34", 204},
		{"PUT", "story", "33", "from 33, late", 409},
		{"GET", "read-only", "50", "", 404},
	}
	for _, st := range steps {
		if code, body, _ := c.do(st.method, "/v1/objects/"+st.key, st.token, strings.NewReader(st.body)); code != st.code {
			t.Fatalf("%s %s %s: %d %s", st.method, st.key, st.token, code, body)
		}
	}

	// Busy writers, each PUT with a new token from a counter per key.
	const keys = 4
	var next [keys]atomic.Uint64
	var mu sync.Mutex
	acked := map[string]uint64{} // the highest acknowledged token per key
	var nacked atomic.Int64
	quiet := &client{t: &quietTB{TB: t}, base: c.base, http: c.http}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 16 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := (w + i) % keys
				key := fmt.Sprint("hot", k)
				tok := next[k].Add(1)
				code, _ := quiet.put(key, fmt.Sprint(tok), fmt.Sprint("v", tok))
				if code == 0 { // the server is gone
					return
				}
				if code == 204 {
					mu.Lock()
					acked[key] = max(acked[key], tok)
					mu.Unlock()
					nacked.Add(1)
				}
			}
		})
	}
	deadline := time.Now().Add(20 * time.Second)
	for nacked.Load() < 1000 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	p.Kill() // SIGKILL, with writes in flight
	close(stop)
	wg.Wait()
	t.Logf("%d writes acknowledged before kill -9", nacked.Load())

	for round := 2; round <= 3; round++ { // a restart, then a restart of a replayed log
		p, c = startHelper(t, dir, fmt.Sprint("store-", round))
		checks := []struct {
			method, key, token string
			code               int
			body               string
		}{
			{"PUT", "story", "33", 409, "has seen token 34"},
			{"GET", "story", "34", 200, "from 34"},
			{"GET", "read-only", "49", 409, "has seen token 50"},
		}
		for _, ck := range checks {
			code, body, _ := c.do(ck.method, "/v1/objects/"+ck.key, ck.token, strings.NewReader("x"))
			if code != ck.code || !strings.Contains(body, ck.body) {
				t.Fatalf("round %d: %s %s with %s: %d %q, want %d %q", round, ck.method, ck.key, ck.token, code, body, ck.code, ck.body)
			}
		}
		for key, tok := range acked {
			k, _ := strconv.Atoi(strings.TrimPrefix(key, "hot"))
			fresh := next[k].Load() + uint64(round) // above anything sent
			code, body := c.get(key, fmt.Sprint(fresh))
			got, _ := strconv.ParseUint(strings.TrimPrefix(body, "v"), 10, 64)
			if code != 200 || got < tok {
				t.Fatalf("round %d: key %s: %d %q; the write with token %d was acknowledged", round, key, code, body, tok)
			}
			if tok > 1 {
				if code, body := c.put(key, fmt.Sprint(tok-1), "stale"); code != 409 {
					t.Fatalf("round %d: key %s: PUT with %d after %d was acknowledged: %d %q", round, key, tok-1, tok, code, body)
				}
			}
		}
		if log := c.log(""); len(log) == 0 || log[0].Seq != 1 {
			t.Errorf("round %d: the accept log of a restarted server starts %v", round, log[:min(1, len(log))])
		}
		p.Kill()
	}
}

// quietTB turns a client's failed requests into nothing: the test expects
// them once the server is killed.
type quietTB struct{ testing.TB }

func (quietTB) Helper()               {}
func (quietTB) Errorf(string, ...any) {}
