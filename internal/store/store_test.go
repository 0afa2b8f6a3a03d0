package store_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/fencerlock/fencer/fence"
	"github.com/fencerlock/fencer/internal/store"
)

// open opens a store in dir ("" for memory), closed when the test ends.
func open(t testing.TB, dir string) *store.Server {
	t.Helper()
	s, err := store.Open(store.Config{DataDir: dir})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// client talks to a store over HTTP.
type client struct {
	t    testing.TB
	base string
	http *http.Client
}

func serve(t testing.TB, s *store.Server) *client {
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &client{t: t, base: srv.URL, http: srv.Client()}
}

// do sends a request; token "" sends no Fencing-Token header. It returns
// the status, the body and the response's headers.
func (c *client) do(method, path, token string, body io.Reader) (int, string, http.Header) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set(fence.Header, token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Errorf("%s %s: %v", method, path, err) // not Fatal: may run on another goroutine
		return 0, "", nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func (c *client) put(key, token, value string) (int, string) {
	code, body, _ := c.do(http.MethodPut, "/v1/objects/"+key, token, strings.NewReader(value))
	return code, body
}

func (c *client) get(key, token string) (int, string) {
	code, body, _ := c.do(http.MethodGet, "/v1/objects/"+key, token, nil)
	return code, body
}

func (c *client) log(after string) []store.Entry {
	c.t.Helper()
	path := "/v1/log"
	if after != "" {
		path += "?after=" + after
	}
	code, body, h := c.do(http.MethodGet, path, "", nil)
	if code != 200 || h.Get("Content-Type") != "application/x-ndjson" {
		c.t.Fatalf("GET %s: %d %s (%s)", path, code, body, h.Get("Content-Type"))
	}
	var out []store.Entry
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		var e store.Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			c.t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	return out
}

// TestAPI walks through every status code of the API, in memory and on
// disk.
func TestAPI(t *testing.T) {
	type req struct {
		method, path, token, body string
		code                      int
		want                      []string // substrings of the response body
	}
	big := strings.Repeat("x", store.MaxValueLen+1)
	reqs := []req{
		{"PUT", "/v1/objects/k", "34", "v34", 204, nil},
		{"GET", "/v1/objects/k", "34", "", 200, []string{"v34"}},
		{"PUT", "/v1/objects/k", "33", "v33", 409, []string{"token 33 is stale", `resource "k" has seen token 34`}},
		{"GET", "/v1/objects/k", "33", "", 409, []string{"token 33 is stale"}},
		{"PUT", "/v1/objects/k", "34", "v34b", 204, nil}, // the same holder again
		{"GET", "/v1/objects/k", "35", "", 200, []string{"v34b"}},
		{"PUT", "/v1/objects/k", "34", "late", 409, []string{"has seen token 35"}}, // the read raised the floor
		{"GET", "/v1/objects/absent", "1", "", 404, []string{"no value"}},
		{"PUT", "/v1/objects/absent", "0", "", 400, []string{"token", "accepted"}},
		{"GET", "/v1/objects/k", "", "", 400, []string{"Fencing-Token", "accepted"}},
		{"PUT", "/v1/objects/k", "abc", "x", 400, []string{`"abc"`, "accepted"}},
		{"PUT", "/v1/objects/k", "-5", "x", 400, []string{"accepted"}},
		{"PUT", "/v1/objects/" + strings.Repeat("k", 257), "1", "x", 400, []string{"257 bytes", "1 to 256 bytes"}},
		{"PUT", "/v1/objects/", "1", "x", 400, []string{"empty"}},
		{"PUT", "/v1/objects/a%01b", "1", "x", 400, []string{"control character"}},
		{"PUT", "/v1/objects/a%ffb", "1", "x", 400, []string{"UTF-8"}},
		{"PUT", "/v1/objects/big", "1", big, 413, []string{"1048576"}},
		{"PUT", "/v1/objects/dir/sub%2Fkey", "1", "nested", 204, nil},
		{"GET", "/v1/objects/dir/sub/key", "1", "", 200, []string{"nested"}},
		{"PUT", "/v1/objects/empty", "1", "", 204, nil},
		{"GET", "/v1/objects/empty", "1", "", 200, nil},
		{"GET", "/v1/nothing", "1", "", 404, nil},
		{"GET", "/", "", "", 404, nil},
		{"DELETE", "/v1/objects/k", "40", "", 405, nil},
		{"POST", "/v1/log", "", "", 405, nil},
		{"GET", "/v1/log?after=x", "", "", 400, []string{"after"}},
	}
	for _, mode := range []string{"memory", "disk"} {
		t.Run(mode, func(t *testing.T) {
			dir := ""
			if mode == "disk" {
				dir = t.TempDir()
			}
			c := serve(t, open(t, dir))
			for i, rq := range reqs {
				code, body, h := c.do(rq.method, rq.path, rq.token, strings.NewReader(rq.body))
				if code != rq.code {
					t.Fatalf("request %d: %s %.40s (token %q): %d %q, want %d", i, rq.method, rq.path, rq.token, code, body, rq.code)
				}
				for _, w := range rq.want {
					if !strings.Contains(body, w) {
						t.Errorf("request %d: %s %.40s: body %q does not contain %q", i, rq.method, rq.path, body, w)
					}
				}
				if code == 405 && h.Get("Allow") == "" {
					t.Errorf("request %d: 405 without an Allow header", i)
				}
				if code == 200 && rq.path != "/v1/log" && h.Get("Content-Type") != "application/octet-stream" {
					t.Errorf("request %d: value served as %q", i, h.Get("Content-Type"))
				}
			}
		})
	}
}

// TestTooLargeChunked sends a value over the limit without a
// Content-Length, so the store only finds out while reading it.
func TestTooLargeChunked(t *testing.T) {
	c := serve(t, open(t, ""))
	body := io.MultiReader(strings.NewReader(strings.Repeat("x", store.MaxValueLen)), strings.NewReader("y"))
	code, msg, _ := c.do(http.MethodPut, "/v1/objects/k", "1", body)
	if code != http.StatusRequestEntityTooLarge || !strings.Contains(msg, "1048576") {
		t.Fatalf("PUT of MaxValueLen+1 bytes, chunked: %d %q", code, msg)
	}
	// Exactly the limit is fine.
	body = io.MultiReader(strings.NewReader(strings.Repeat("x", store.MaxValueLen)))
	if code, msg, _ := c.do(http.MethodPut, "/v1/objects/k", "1", body); code != http.StatusNoContent {
		t.Fatalf("PUT of MaxValueLen bytes, chunked: %d %q", code, msg)
	}
}

func TestAcceptLog(t *testing.T) {
	c := serve(t, open(t, ""))
	c.put("a", "5", "hello")
	c.put("a", "4", "nope")
	c.get("a", "6")
	c.get("b", "1")
	c.get("a", "5")
	c.put("k", "", "no token: not a decision")
	want := []store.Entry{
		{Seq: 1, Op: "put", Key: "a", Token: 5, Accepted: true, Floor: 5, ValueLen: 5},
		{Seq: 2, Op: "put", Key: "a", Token: 4, Accepted: false, Floor: 5, ValueLen: 4},
		{Seq: 3, Op: "get", Key: "a", Token: 6, Accepted: true, Floor: 6, ValueLen: 5},
		{Seq: 4, Op: "get", Key: "b", Token: 1, Accepted: true, Floor: 1, ValueLen: 0},
		{Seq: 5, Op: "get", Key: "a", Token: 5, Accepted: false, Floor: 6, ValueLen: 0},
	}
	if got := c.log(""); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("log:\n%v\nwant\n%v", got, want)
	}
	if got := c.log("3"); fmt.Sprint(got) != fmt.Sprint(want[3:]) {
		t.Fatalf("log after 3:\n%v\nwant\n%v", got, want[3:])
	}
	if got := c.log("99"); len(got) != 0 {
		t.Fatalf("log after 99: %v", got)
	}
	_, body, _ := c.do("GET", "/v1/log", "", nil)
	if !strings.Contains(body, `{"seq":1,"op":"put","key":"a","token":5,"accepted":true,"floor":5,"value_len":5}`) {
		t.Errorf("log is not in the documented JSON form:\n%s", body)
	}
}

func TestAcceptLogBounded(t *testing.T) {
	s, err := store.Open(store.Config{LogEntries: 10})
	if err != nil {
		t.Fatal(err)
	}
	c := serve(t, s)
	for i := range 25 {
		c.put("k", fmt.Sprint(i+1), "v")
	}
	got := c.log("")
	if len(got) != 10 || got[0].Seq != 16 || got[9].Seq != 25 {
		t.Fatalf("a 10-entry log after 25 decisions holds %v", got)
	}
	if got := c.log("20"); len(got) != 5 || got[0].Seq != 21 {
		t.Fatalf("after 20: %v", got)
	}
	if _, err := store.Open(store.Config{LogEntries: -1}); err == nil {
		t.Fatal("Open with a negative log length succeeded")
	}
}

func TestReopen(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	c := serve(t, s)
	c.put("a", "10", "first")
	c.put("a", "11", "second")
	c.get("b", "7") // a floor without a value
	c.put("c", "3", strings.Repeat("z", 1000))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if code, _ := c.put("a", "12", "after close"); code != http.StatusServiceUnavailable {
		t.Fatalf("PUT after Close: %d, want 503", code)
	}
	c = serve(t, open(t, dir))
	checks := []struct {
		method, key, token string
		code               int
		body               string
	}{
		{"GET", "a", "11", 200, "second"},
		{"PUT", "a", "10", 409, "has seen token 11"},
		{"GET", "b", "6", 409, "has seen token 7"},
		{"GET", "b", "7", 404, ""},
		{"GET", "c", "3", 200, strings.Repeat("z", 1000)},
	}
	for _, ck := range checks {
		code, body, _ := c.do(ck.method, "/v1/objects/"+ck.key, ck.token, strings.NewReader("x"))
		if code != ck.code || !strings.Contains(body, ck.body) {
			t.Errorf("after reopen: %s %s with %s: %d %.60q, want %d %.60q", ck.method, ck.key, ck.token, code, body, ck.code, ck.body)
		}
	}
}

// TestConcurrentWriters has writers race on a few keys with tokens from a
// counter per key (a lock service), some of them late. Per key, the accept
// log's accepted tokens must never go down, and each key ends with the
// value of its highest accepted PUT.
func TestConcurrentWriters(t *testing.T) {
	s := open(t, t.TempDir())
	c := serve(t, s)
	const keys, writers, ops = 3, 8, 40
	var next [keys]atomic.Uint64
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range ops {
				k := (w + i) % keys
				tok := next[k].Add(1)
				if i%4 == 0 && tok > 3 {
					tok -= 3 // a late request
				}
				code, body := c.put(fmt.Sprint("key", k), fmt.Sprint(tok), fmt.Sprint("v", tok))
				if code != 204 && code != 409 {
					t.Errorf("PUT: %d %s", code, body)
					return
				}
			}
		})
	}
	wg.Wait()
	floor := map[string]uint64{}
	best := map[string]uint64{}
	for _, e := range c.log("") {
		if e.Accepted {
			if uint64(e.Token) < floor[e.Key] {
				t.Fatalf("key %s: token %d accepted after %d (seq %d)", e.Key, e.Token, floor[e.Key], e.Seq)
			}
			floor[e.Key] = uint64(e.Token)
			best[e.Key] = max(best[e.Key], uint64(e.Token))
		} else if uint64(e.Token) >= floor[e.Key] {
			t.Fatalf("key %s: token %d refused with floor %d", e.Key, e.Token, floor[e.Key])
		}
	}
	for k, b := range best {
		if code, v := c.get(k, fmt.Sprint(b)); code != 200 || v != fmt.Sprint("v", b) {
			t.Errorf("key %s: %d %q, want the value of token %d", k, code, v, b)
		}
	}
}

func TestServe(t *testing.T) {
	s := open(t, "")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	req, _ := http.NewRequest(http.MethodPut, "http://"+ln.Addr().String()+"/v1/objects/x", bytes.NewReader([]byte("v")))
	req.Header.Set(fence.Header, "1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 {
		t.Fatalf("PUT: %d", resp.StatusCode)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

func BenchmarkPut(b *testing.B) {
	for _, mode := range []string{"memory", "disk"} {
		b.Run(mode, func(b *testing.B) {
			dir := ""
			if mode == "disk" {
				dir = b.TempDir()
			}
			c := serve(b, open(b, dir))
			c.http.Transport.(*http.Transport).MaxIdleConnsPerHost = 256
			var ids atomic.Int64
			value := strings.Repeat("v", 100)
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				key := fmt.Sprint("key", ids.Add(1))
				tok := 0
				for pb.Next() {
					tok++
					if code, body := c.put(key, fmt.Sprint(tok), value); code != 204 {
						b.Errorf("PUT: %d %s", code, body)
						return
					}
				}
			})
		})
	}
}
