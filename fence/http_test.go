package fence_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/fence"
)

// echoToken answers 200 with "token N" or "unfenced".
var echoToken = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if tok, ok := fence.TokenFromContext(r.Context()); ok {
		fmt.Fprintf(w, "token %d", tok)
		return
	}
	io.WriteString(w, "unfenced")
})

func TestMiddleware(t *testing.T) {
	type req struct {
		path    string
		headers []string // Fencing-Token values
		code    int
		body    []string // substrings of the response body
	}
	tests := []struct {
		name string
		opts *fence.MiddlewareOptions
		reqs []req
	}{
		{"33 after 34 is a conflict", nil, []req{
			{"/x", []string{"34"}, 200, []string{"token 34"}},
			{"/x", []string{"33"}, 409, []string{"token 33 is stale", `resource "/x" has seen token 34`}},
			{"/x", []string{"34"}, 200, []string{"token 34"}},
			{"/y", []string{"33"}, 200, []string{"token 33"}}, // another path, another resource
		}},
		{"missing token", nil, []req{
			{"/x", nil, 400, []string{"needs a fencing token", "Fencing-Token header", "from 1 to 18446744073709551615"}},
		}},
		{"malformed tokens", nil, []req{
			{"/x", []string{"abc"}, 400, []string{`"abc"`, "accepted"}},
			{"/x", []string{"0"}, 400, []string{`"0"`}},
			{"/x", []string{"-1"}, 400, []string{`"-1"`}},
			{"/x", []string{"034"}, 400, []string{`"034"`}},
			{"/x", []string{"18446744073709551616"}, 400, []string{"accepted"}},
			{"/x", []string{"1, 2"}, 400, []string{"accepted"}},
			{"/x", []string{"1", "2"}, 400, []string{"2 values"}},
		}},
		{"allow unfenced", &fence.MiddlewareOptions{AllowUnfenced: true}, []req{
			{"/x", nil, 200, []string{"unfenced"}},
			{"/x", []string{"5"}, 200, []string{"token 5"}},
			{"/x", []string{"4"}, 409, []string{"token 4 is stale"}},
			{"/x", []string{"x"}, 400, []string{`"x"`}}, // malformed is never let through
		}},
		{"resource from the request", &fence.MiddlewareOptions{
			Resource: func(r *http.Request) string { return r.URL.Query().Get("account") },
		}, []req{
			{"/a?account=alice", []string{"9"}, 200, nil},
			{"/b?account=alice", []string{"8"}, 409, []string{`resource "alice" has seen token 9`}},
			{"/b?account=bob", []string{"8"}, 200, nil},
			{"/b", []string{"8"}, 400, []string{"resource", "it is empty"}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(fence.Middleware(fence.NewGuard(nil), tt.opts)(echoToken))
			t.Cleanup(srv.Close)
			for i, rq := range tt.reqs {
				r, _ := http.NewRequest(http.MethodPut, srv.URL+rq.path, nil)
				for _, h := range rq.headers {
					r.Header.Add(fence.Header, h)
				}
				resp, err := srv.Client().Do(r)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != rq.code {
					t.Fatalf("request %d (%s %q): status %d, want %d; body %q", i, rq.path, rq.headers, resp.StatusCode, rq.code, b)
				}
				for _, part := range rq.body {
					if !strings.Contains(string(b), part) {
						t.Errorf("request %d (%s %q): body %q does not contain %q", i, rq.path, rq.headers, b, part)
					}
				}
				if rq.code >= 400 && !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
					t.Errorf("request %d: error with Content-Type %q, want text/plain", i, resp.Header.Get("Content-Type"))
				}
			}
		})
	}
}

func TestMiddlewareStoreFailure(t *testing.T) {
	h := fence.Middleware(fence.NewGuard(failingStore{}), nil)(echoToken)
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, "/x", nil)
	r.Header.Set(fence.Header, "3")
	h.ServeHTTP(w, r)
	if w.Code != http.StatusInternalServerError || strings.Contains(w.Body.String(), errDisk.Error()) {
		t.Fatalf("status %d, body %q: want 500 without the store's error", w.Code, w.Body)
	}
}

func TestStatusCode(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{nil, 200},
		{&fence.StaleError{Resource: "x", Token: 1, Floor: 2}, 409},
		{fmt.Errorf("wrapped: %w", &fence.StaleError{}), 409},
		{fence.ErrNoToken, 400},
		{&fencer.InvalidError{Field: "token"}, 400},
		{errors.New("disk"), 500},
	}
	for _, tt := range tests {
		if got := fence.StatusCode(tt.err); got != tt.want {
			t.Errorf("StatusCode(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}

func TestContextWithToken(t *testing.T) {
	ctx := fence.ContextWithToken(context.Background(), 42)
	if tok, ok := fence.TokenFromContext(ctx); !ok || tok != 42 {
		t.Fatalf("TokenFromContext = %d, %v", tok, ok)
	}
	if _, ok := fence.TokenFromContext(context.Background()); ok {
		t.Fatal("TokenFromContext of a bare context reported a token")
	}
}

// FuzzTokenFromHeader checks that header parsing never panics, accepts
// exactly the canonical decimal form of a non-zero token, and that what it
// accepts round-trips.
func FuzzTokenFromHeader(f *testing.F) {
	for _, s := range []string{"1", "33", "34", "0", "-1", "+1", "01", "18446744073709551615", "18446744073709551616", " 1", "1 ", "1,2", "", "0x10", "１"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h := http.Header{}
		h.Set(fence.Header, s)
		tok, err := fence.TokenFromHeader(h)
		if err != nil {
			if !errors.Is(err, fencer.ErrInvalid) {
				t.Fatalf("TokenFromHeader(%q): %v, want an InvalidError", s, err)
			}
			return
		}
		if tok == 0 || tok.String() != s {
			t.Fatalf("TokenFromHeader(%q) = %d, which is not its canonical form", s, tok)
		}
	})
}
