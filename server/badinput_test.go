package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/fencerlock/fencer/internal/api/fencerv1"
	"github.com/fencerlock/fencer/internal/api/fencerv1/fencerv1connect"
	"github.com/fencerlock/fencer/internal/rpcclient"
	"github.com/fencerlock/fencer/server"
)

// The bad-input tests send a real node every kind of malformed request, over
// the Connect protocol (protobuf), gRPC, and JSON over HTTP as curl would,
// and check that each is refused with the right code and a message that
// says what is accepted, and that none of them changes the state.

const servicePath = "/fencer.v1.LockService/"

// badCall is one request and what the node must answer.
type badCall struct {
	name string
	req  proto.Message // *fencerv1.AcquireRequest, ReleaseRequest, KeepAliveRequest or StatusRequest
	// json, if set, is the JSON body; otherwise req in protojson.
	json string
	// code is the expected error code, or 0 for success.
	code connect.Code
	// want are substrings of the error message.
	want []string
	// check inspects a successful response.
	check func(t *testing.T, resp proto.Message)
	// unsendable: the Go clients refuse to encode req (invalid UTF-8 in a
	// string field), so only JSON reaches the server.
	unsendable bool
}

func method(req proto.Message) string {
	return strings.TrimSuffix(string(req.ProtoReflect().Descriptor().Name()), "Request")
}

func newResponse(req proto.Message) proto.Message {
	switch req.(type) {
	case *fencerv1.AcquireRequest:
		return &fencerv1.AcquireResponse{}
	case *fencerv1.ReleaseRequest:
		return &fencerv1.ReleaseResponse{}
	case *fencerv1.KeepAliveRequest:
		return &fencerv1.KeepAliveResponse{}
	case *fencerv1.StatusRequest:
		return &fencerv1.StatusResponse{}
	}
	panic(fmt.Sprintf("no response type for %T", req))
}

// invoke sends req with a generated client.
func invoke(ctx context.Context, cl fencerv1connect.LockServiceClient, req proto.Message) (proto.Message, error) {
	switch r := req.(type) {
	case *fencerv1.AcquireRequest:
		resp, err := cl.Acquire(ctx, connect.NewRequest(r))
		if err != nil {
			return nil, err
		}
		return resp.Msg, nil
	case *fencerv1.ReleaseRequest:
		resp, err := cl.Release(ctx, connect.NewRequest(r))
		if err != nil {
			return nil, err
		}
		return resp.Msg, nil
	case *fencerv1.KeepAliveRequest:
		resp, err := cl.KeepAlive(ctx, connect.NewRequest(r))
		if err != nil {
			return nil, err
		}
		return resp.Msg, nil
	case *fencerv1.StatusRequest:
		resp, err := cl.Status(ctx, connect.NewRequest(r))
		if err != nil {
			return nil, err
		}
		return resp.Msg, nil
	}
	panic(fmt.Sprintf("no method for %T", req))
}

// jsonError is the body of a Connect error response.
type jsonError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// httpStatus is the HTTP status the Connect protocol gives a code.
func httpStatus(code connect.Code) int {
	switch code {
	case 0:
		return http.StatusOK
	case connect.CodeInvalidArgument, connect.CodeFailedPrecondition:
		return http.StatusBadRequest
	case connect.CodeResourceExhausted:
		return http.StatusTooManyRequests
	case connect.CodeDeadlineExceeded:
		return http.StatusGatewayTimeout
	}
	panic(fmt.Sprintf("no HTTP status for %v in these tests", code))
}

// postJSON sends body as JSON over HTTP, as curl would, and returns the
// response's status, its body and, for an error, the decoded error.
func postJSON(t *testing.T, hc *http.Client, addr, method string, body []byte, header http.Header) (int, []byte, jsonError, http.Header) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+servicePath+method, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", method, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: read the response: %v", method, err)
	}
	var je jsonError
	if resp.StatusCode != http.StatusOK && len(out) > 0 {
		if err := json.Unmarshal(out, &je); err != nil {
			t.Fatalf("POST %s: %d with a body that is not a Connect error: %q", method, resp.StatusCode, out)
		}
	}
	return resp.StatusCode, out, je, resp.Header
}

func wantMessage(t *testing.T, msg string, want []string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("message %q does not say %q", msg, w)
		}
	}
}

func keepAliveIDs(n int) []uint64 {
	ids := make([]uint64, n)
	for i := range ids {
		ids[i] = uint64(i + 1_000_000)
	}
	return ids
}

func TestBadInput(t *testing.T) {
	srv := startCluster(t, 1)[0]
	hc := rpcclient.NewHTTPClient()
	t.Cleanup(hc.CloseIdleConnections)
	base := "http://" + srv.Addr()
	clients := map[string]fencerv1connect.LockServiceClient{
		"connect": fencerv1connect.NewLockServiceClient(hc, base),
		"grpc":    fencerv1connect.NewLockServiceClient(hc, base, connect.WithGRPC()),
	}
	ctx := ctxFor(t, time.Minute)

	// A holder, whose grant the bad requests must leave alone, after an
	// earlier grant whose token is now stale.
	const holder = 1000
	first, err := clients["connect"].Acquire(ctx, connect.NewRequest(&fencerv1.AcquireRequest{SessionId: 999, Name: "held", TtlMs: 600_000}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := clients["connect"].Release(ctx, connect.NewRequest(&fencerv1.ReleaseRequest{SessionId: 999, Token: first.Msg.Token})); err != nil {
		t.Fatal(err)
	}
	resp, err := clients["connect"].Acquire(ctx, connect.NewRequest(&fencerv1.AcquireRequest{SessionId: holder, Name: "held", TtlMs: 600_000}))
	if err != nil || resp.Msg.Status != fencerv1.AcquireStatus_ACQUIRE_STATUS_GRANTED {
		t.Fatalf("acquire: %v %v", resp, err)
	}
	token := resp.Msg.Token
	hash, _ := srv.StateHash()

	const acceptedName = "accepted: 1 to 256 bytes of UTF-8 with no control characters"
	acquire := func(session uint64, name string, ttl, delay uint64) *fencerv1.AcquireRequest {
		return &fencerv1.AcquireRequest{SessionId: session, Name: name, TtlMs: ttl, LockDelayMs: delay}
	}
	released := func(want bool) func(*testing.T, proto.Message) {
		return func(t *testing.T, m proto.Message) {
			if got := m.(*fencerv1.ReleaseResponse).Released; got != want {
				t.Errorf("released = %v, want %v", got, want)
			}
		}
	}
	calls := []badCall{
		{name: "empty name", req: acquire(1, "", 1000, 0), code: connect.CodeInvalidArgument, want: []string{"it is empty", acceptedName}},
		{name: "257-byte name", req: acquire(1, strings.Repeat("n", 257), 1000, 0), code: connect.CodeInvalidArgument, want: []string{"257 bytes long", acceptedName}},
		{name: "256-byte name is fine but the TTL is 0", req: acquire(1, strings.Repeat("n", 256), 0, 0), code: connect.CodeInvalidArgument, want: []string{"ttl_ms", "accepted: 10 to 86400000"}},
		{name: "invalid UTF-8 name", req: acquire(1, "a\xffb", 1000, 0), json: "{\"sessionId\":\"1\",\"name\":\"a\xffb\",\"ttlMs\":\"1000\"}",
			code: connect.CodeInvalidArgument, want: []string{"invalid UTF-8"}, unsendable: true},
		{name: "NUL in name", req: acquire(1, "a\x00b", 1000, 0), code: connect.CodeInvalidArgument, want: []string{"control character at byte 1", acceptedName}},
		{name: "newline in name", req: acquire(1, "a\nb", 1000, 0), code: connect.CodeInvalidArgument, want: []string{"control character", acceptedName}},
		{name: "DEL in name", req: acquire(1, "a\x7f", 1000, 0), code: connect.CodeInvalidArgument, want: []string{"control character", acceptedName}},
		{name: "C1 control in name", req: acquire(1, "a\u0085", 1000, 0), code: connect.CodeInvalidArgument, want: []string{"control character", acceptedName}},
		{name: "TTL 0", req: acquire(1, "a", 0, 0), code: connect.CodeInvalidArgument, want: []string{`ttl_ms "0"`, "accepted: 10 to 86400000"}},
		{name: "TTL 9ms", req: acquire(1, "a", 9, 0), code: connect.CodeInvalidArgument, want: []string{`ttl_ms "9"`, "accepted: 10 to 86400000"}},
		{name: "TTL over 24h", req: acquire(1, "a", 86_400_001, 0), code: connect.CodeInvalidArgument, want: []string{`ttl_ms "86400001"`, "accepted: 10 to 86400000"}},
		{name: "lock-delay over 24h", req: acquire(1, "a", 1000, 86_400_001), code: connect.CodeInvalidArgument, want: []string{`lock_delay_ms "86400001"`, "accepted: 0 to 86400000"}},
		{name: "session 0", req: acquire(0, "a", 1000, 0), code: connect.CodeInvalidArgument, want: []string{"session_id", "non-zero"}},
		{name: "live session with another TTL", req: acquire(holder, "held", 1000, 0), code: connect.CodeInvalidArgument, want: []string{"choose another random session ID"}},
		{name: "oversized request", req: acquire(1, strings.Repeat("n", 1<<20), 1000, 0), code: connect.CodeResourceExhausted, want: []string{"larger than configured max 1048576"}},
		{name: "release session 0", req: &fencerv1.ReleaseRequest{}, code: connect.CodeInvalidArgument, want: []string{"session_id", "non-zero"}},
		{name: "release unknown session", req: &fencerv1.ReleaseRequest{SessionId: 424242}, check: released(false)},
		{name: "release unknown session and token", req: &fencerv1.ReleaseRequest{SessionId: 424242, Token: token}, check: released(false)},
		{name: "release with a wrong token", req: &fencerv1.ReleaseRequest{SessionId: holder, Token: token + 1000}, check: released(false)},
		{name: "release with the lock's previous token", req: &fencerv1.ReleaseRequest{SessionId: holder, Token: first.Msg.Token}, check: released(false)},
		{name: "keep-alive of 10001 sessions", req: &fencerv1.KeepAliveRequest{SessionIds: keepAliveIDs(10_001)}, code: connect.CodeInvalidArgument, want: []string{"10001 sessions", "at most 10000"}},
		{name: "keep-alive of unknown sessions", req: &fencerv1.KeepAliveRequest{SessionIds: []uint64{7, 8}}, check: func(t *testing.T, m proto.Message) {
			if got := m.(*fencerv1.KeepAliveResponse).Expired; len(got) != 2 {
				t.Errorf("expired = %v, want both unknown sessions", got)
			}
		}},
		{name: "status of a bad name", req: &fencerv1.StatusRequest{Name: "a\x01"}, code: connect.CodeInvalidArgument, want: []string{"control character", acceptedName}},
	}
	for _, bc := range calls {
		for _, via := range []string{"connect", "grpc", "json"} {
			t.Run(bc.name+"/"+via, func(t *testing.T) {
				var msg string
				var code connect.Code
				var out proto.Message
				if via == "json" {
					body := []byte(bc.json)
					if bc.json == "" {
						var err error
						if body, err = protojson.Marshal(bc.req); err != nil {
							t.Fatal(err)
						}
					}
					status, raw, je, _ := postJSON(t, hc, srv.Addr(), method(bc.req), body, nil)
					if want := httpStatus(bc.code); status != want {
						t.Errorf("HTTP status %d, want %d (%v); body %.300s", status, want, bc.code, raw)
					}
					if status == http.StatusOK {
						out = newResponse(bc.req)
						if err := protojson.Unmarshal(raw, out); err != nil {
							t.Fatalf("response %q: %v", raw, err)
						}
					} else if err := code.UnmarshalText([]byte(je.Code)); err != nil {
						t.Fatalf("error code %q: %v", je.Code, err)
					}
					msg = je.Message
				} else {
					resp, err := invoke(ctx, clients[via], bc.req)
					if bc.unsendable {
						// The client cannot encode it; the JSON case shows
						// what the server says.
						if err == nil || !strings.Contains(err.Error(), "invalid UTF-8") {
							t.Errorf("the %s client sent a name with invalid UTF-8: %v", via, err)
						}
						return
					}
					code, out = connect.CodeOf(err), resp
					if err == nil {
						code = 0
					} else {
						var ce *connect.Error
						if errors.As(err, &ce) {
							msg = ce.Message()
						}
					}
				}
				if code != bc.code {
					t.Fatalf("code %v (message %q), want %v", code, msg, bc.code)
				}
				if code != 0 {
					wantMessage(t, msg, bc.want)
				} else if bc.check != nil {
					bc.check(t, out)
				}
			})
		}
	}

	// Bodies no client library would send.
	valid, _ := proto.Marshal(acquire(1, "raw", 1000, 0))
	badUTF8 := []byte{0x08, 0x01, 0x12, 0x03, 'a', 0xff, 'b', 0x18, 0xe8, 0x07} // session 1, name "a\xffb", ttl 1000
	raws := []struct {
		name        string
		contentType string
		method      string // POST unless set
		path        string // Acquire unless set
		body        []byte
		status      int
		code        string
		want        []string
	}{
		{name: "truncated protobuf", contentType: "application/proto", body: valid[:len(valid)-1], status: 400, code: "invalid_argument", want: []string{"unmarshal", "AcquireRequest"}},
		{name: "garbage protobuf", contentType: "application/proto", body: []byte{0x0a, 0xff, 0xff, 0xff}, status: 400, code: "invalid_argument", want: []string{"invalid wire-format"}},
		{name: "protobuf with a wrong wire type", contentType: "application/proto", body: []byte{0x0d, 1, 2, 3, 4}, status: 400, code: "invalid_argument"},
		{name: "invalid UTF-8 in protobuf", contentType: "application/proto", body: badUTF8, status: 400, code: "invalid_argument", want: []string{"invalid UTF-8"}},
		{name: "empty JSON body", contentType: "application/json", body: nil, status: 400, code: "invalid_argument", want: []string{"zero-length payload"}},
		{name: "truncated JSON", contentType: "application/json", body: []byte(`{"sessionId":"1","name":"a"`), status: 400, code: "invalid_argument", want: []string{"unexpected EOF"}},
		{name: "JSON array", contentType: "application/json", body: []byte(`[]`), status: 400, code: "invalid_argument", want: []string{"unexpected token ["}},
		{name: "not JSON", contentType: "application/json", body: []byte(`name=a&ttl=5`), status: 400, code: "invalid_argument", want: []string{"syntax error"}},
		{name: "negative session ID", contentType: "application/json", body: []byte(`{"sessionId":"-1","name":"a","ttlMs":"1000"}`), status: 400, code: "invalid_argument", want: []string{"invalid value for uint64 field sessionId"}},
		{name: "session ID above 2^64", contentType: "application/json", body: []byte(`{"sessionId":"18446744073709551616","name":"a","ttlMs":"1000"}`), status: 400, code: "invalid_argument", want: []string{"sessionId"}},
		{name: "TTL as a float", contentType: "application/json", body: []byte(`{"sessionId":"1","name":"a","ttlMs":1.5}`), status: 400, code: "invalid_argument", want: []string{"ttlMs"}},
		{name: "wait as a string", contentType: "application/json", body: []byte(`{"sessionId":"1","name":"a","ttlMs":"1000","wait":"yes"}`), status: 400, code: "invalid_argument", want: []string{"wait"}},
		{name: "duplicate field", contentType: "application/json", body: []byte(`{"sessionId":"1","name":"a","name":"b","ttlMs":"1000"}`), status: 400, code: "invalid_argument", want: []string{"duplicate field"}},
		{name: "oversized JSON", contentType: "application/json", body: []byte(`{"name":"` + strings.Repeat("n", 1<<20) + `"}`), status: 429, code: "resource_exhausted", want: []string{"larger than configured max 1048576"}},
		{name: "text/plain", contentType: "text/plain", body: []byte(`{}`), status: 415},
		{name: "no content type", body: []byte(`{}`), status: 415},
		{name: "XML", contentType: "application/xml", body: []byte(`<acquire/>`), status: 415},
		{name: "GET", method: http.MethodGet, status: 405},
		{name: "unknown method", contentType: "application/json", path: "Grant", body: []byte(`{}`), status: 404},
	}
	for _, rc := range raws {
		t.Run("raw/"+rc.name, func(t *testing.T) {
			m, path := rc.method, rc.path
			if m == "" {
				m = http.MethodPost
			}
			if path == "" {
				path = "Acquire"
			}
			req, err := http.NewRequestWithContext(ctx, m, base+servicePath+path, bytes.NewReader(rc.body))
			if err != nil {
				t.Fatal(err)
			}
			if rc.contentType != "" {
				req.Header.Set("Content-Type", rc.contentType)
			}
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != rc.status {
				t.Fatalf("HTTP status %d, want %d; body %.300s", resp.StatusCode, rc.status, body)
			}
			if rc.status == http.StatusUnsupportedMediaType {
				// What is accepted is in the Accept-Post header.
				accept := resp.Header.Get("Accept-Post")
				for _, ct := range []string{"application/json", "application/proto", "application/grpc"} {
					if !strings.Contains(accept, ct) {
						t.Errorf("Accept-Post %q does not name %s", accept, ct)
					}
				}
			}
			if rc.code == "" {
				return
			}
			var je jsonError
			if err := json.Unmarshal(body, &je); err != nil {
				t.Fatalf("body %q is not a Connect error: %v", body, err)
			}
			if je.Code != rc.code {
				t.Errorf("code %q (message %q), want %q", je.Code, je.Message, rc.code)
			}
			wantMessage(t, je.Message, rc.want)
		})
	}

	// None of it changed the state: the holder holds, no token was issued.
	if got, _ := srv.StateHash(); got != hash {
		t.Errorf("state hash %016x after the bad requests, want %016x as before", got, hash)
	}
	st, err := clients["connect"].Status(ctx, connect.NewRequest(&fencerv1.StatusRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if st.Msg.LastToken != token || len(st.Msg.Locks) != 1 || st.Msg.Locks[0].HolderSession != holder || st.Msg.Locks[0].Token != token {
		t.Errorf("after the bad requests: %v; want only %q held by session %d with token %d, and last token %d", st.Msg, "held", holder, token, token)
	}

	// Unknown JSON fields are ignored (Connect's JSON codec discards them
	// so that old servers accept newer clients); a misspelt field is then
	// simply absent, and the request is judged without it.
	t.Run("unknown JSON fields", func(t *testing.T) {
		status, raw, _, _ := postJSON(t, hc, srv.Addr(), "Acquire", []byte(`{"sessionId":"2000","name":"after","ttlMs":"60000","colour":"blue","nested":{"a":[1,2]}}`), nil)
		var got fencerv1.AcquireResponse
		if status != http.StatusOK || protojson.Unmarshal(raw, &got) != nil || got.Status != fencerv1.AcquireStatus_ACQUIRE_STATUS_GRANTED {
			t.Fatalf("acquire with unknown fields: %d %s, want granted", status, raw)
		}
		if got.Token != token+1 {
			t.Errorf("token %d after the bad requests, want %d", got.Token, token+1)
		}
		status, _, je, _ := postJSON(t, hc, srv.Addr(), "Acquire", []byte(`{"sessionId":"2001","name":"after2","ttl":"60000"}`), nil)
		if status != http.StatusBadRequest || !strings.Contains(je.Message, `invalid ttl_ms "0"; accepted: 10 to 86400000`) {
			t.Errorf("acquire with a misspelt ttl: %d %+v, want 400 saying ttl_ms 0 is not accepted", status, je)
		}
	})
}

// FuzzAcquireJSON posts arbitrary bodies to a live node as JSON Acquire
// requests. The node must answer every one, never with a server error: a
// 5xx is allowed only for a well-formed waiting acquire that the request's
// own timeout ended (deadline_exceeded, 504). As a plain test it runs the
// seed corpus only.
func FuzzAcquireJSON(f *testing.F) {
	seeds := []string{
		`{}`,
		`{"sessionId":"1","name":"fuzz-a","ttlMs":"1000"}`,
		`{"sessionId":"2","name":"fuzz-b","ttlMs":"60000","wait":true,"lockDelayMs":"5"}`,
		`{"sessionId":2,"name":"fuzz-b","ttlMs":60000,"wait":true}`,
		`{"session_id":"3","name":"fuzz-c","ttl_ms":"10"}`,
		`{"sessionId":"18446744073709551615","name":"fuzz-d","ttlMs":"86400000","lockDelayMs":"86400000"}`,
		`{"sessionId":"18446744073709551616","name":"x","ttlMs":"1"}`,
		`{"sessionId":"-1"}`, `{"sessionId":1.5}`, `{"sessionId":1e3,"name":"fuzz-e","ttlMs":"1e3"}`,
		`{"sessionId":null,"name":null,"ttlMs":null,"wait":null}`,
		`{"name":"\u0000"}`, `{"name":"\ud800"}`, `{"name":"` + strings.Repeat("é", 200) + `"}`,
		`{"name":{"nested":[1,2,{"a":"b"}]}}`, `{"wait":"true"}`, `{"status":"ACQUIRE_STATUS_GRANTED"}`,
		`[` + strings.Repeat(`[`, 200) + strings.Repeat(`]`, 200) + `]`,
		`{"a":` + strings.Repeat(`{"a":`, 120) + `1` + strings.Repeat(`}`, 121),
		"\xef\xbb\xbf{}", "  \n\t ", "null", "true", `"string"`, "\xff\xfe", `{"sessionId":"5","name":"fuzz-f","ttlMs":"1000"}garbage`,
		`{"sessionId":"6","name":"fuzz-g","ttlMs":"1000","sessionId":"7"}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	srv := startFuzzNode(f)
	hc := rpcclient.NewHTTPClient()
	hc.Timeout = 20 * time.Second // a hung node fails the input instead of the run
	f.Cleanup(hc.CloseIdleConnections)
	timeout := http.Header{"Connect-Timeout-Ms": {"500"}}

	f.Fuzz(func(t *testing.T, body []byte) {
		status, raw, je, _ := postJSON(t, hc, srv.Addr(), "Acquire", body, timeout)
		if status < 500 {
			if status == http.StatusOK {
				var resp fencerv1.AcquireResponse
				if err := protojson.Unmarshal(raw, &resp); err != nil || resp.Status == fencerv1.AcquireStatus_ACQUIRE_STATUS_UNSPECIFIED {
					t.Fatalf("200 with a body that is no AcquireResponse: %q (%v)", raw, err)
				}
			}
			return
		}
		var req fencerv1.AcquireRequest
		waiting := protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(body, &req) == nil && req.Wait
		if status == http.StatusGatewayTimeout && je.Code == "deadline_exceeded" && waiting {
			return
		}
		t.Fatalf("body %q: server error %d %s", body, status, raw)
	})
}

// startFuzzNode starts a one-node cluster for a fuzz target (nodeConfig and
// startNode take a *testing.T).
func startFuzzNode(f *testing.F) *server.Server {
	f.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := server.Start(ctx, server.Config{
		NodeID:           "n1",
		DataDir:          f.TempDir(),
		ListenAddr:       "127.0.0.1:0",
		RaftAddr:         "127.0.0.1:0",
		HeartbeatTimeout: 300 * time.Millisecond,
		Bootstrap:        true,
		Logger:           testLogger(),
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { srv.Close() })
	deadline := time.Now().Add(30 * time.Second)
	for !srv.IsLeader() {
		if time.Now().After(deadline) {
			f.Fatal("the node did not lead within 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return srv
}
