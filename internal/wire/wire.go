// Package wire is the fencer server's native protocol: the three calls on
// a lease's hot path (Acquire, Release, KeepAlive) as small binary frames
// over one TCP connection, many calls in flight at once. It serves the same
// operations as the gRPC and JSON API (proto/fencer/v1/lock.proto), on the
// same port, at a fraction of the cost per call; the Go client uses it.
//
// A connection starts with the client sending Magic. Every message after
// that is a frame: a uvarint length, then that many bytes of payload. A
// request payload is its Kind, a uvarint call ID chosen by the client, and
// the fields of the kind. A response payload is the request's Kind with
// the high bit set, the call ID, a Code, and either the fields of the
// answer (CodeOK) or an error message and a leader address. Responses come
// in any order; the ID pairs them with requests. Strings are a uvarint
// length and bytes; numbers are uvarints; flags are one byte.
//
// Decoding is strict and never panics: a frame that is too long, truncated,
// has unknown kinds or flags, or trailing bytes is an error, and a server
// closes a connection that sends one.
package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Magic opens every connection. HTTP requests start with a method name and
// HTTP/2 with "PRI ", so a server can tell the protocols apart by the
// first four bytes.
const Magic = "FNCR\x01"

// MaxFrame bounds a frame's payload.
const MaxFrame = 1 << 20

// MaxKeepAlive bounds the sessions of one KeepAlive.
const MaxKeepAlive = 10000

// Kind says what a frame carries.
type Kind byte

// The request kinds. A response has the request's kind | respBit.
const (
	KindAcquire   Kind = 1
	KindRelease   Kind = 2
	KindKeepAlive Kind = 3
	// KindPing has no fields. Any node answers it at once, leader or not:
	// a client pings a connection whose calls are slow to tell a busy
	// leader from a dead or paused node.
	KindPing Kind = 4
	respBit  Kind = 0x80
)

// Code is the outcome of a call, with the meanings of the gRPC codes of
// the same names.
type Code byte

const (
	CodeOK                 Code = 0
	CodeInvalidArgument    Code = 1
	CodeFailedPrecondition Code = 2 // not the leader; Response.Leader says who is
	CodeUnavailable        Code = 3
	CodeAborted            Code = 4 // a wait ended without a grant
	CodeNotFound           Code = 5
	CodeInternal           Code = 6
	CodeCanceled           Code = 7
	CodeDeadlineExceeded   Code = 8
	maxCode                     = CodeDeadlineExceeded
)

// Request is one call.
type Request struct {
	Kind Kind
	ID   uint64
	// Acquire and Release.
	Session uint64
	// Acquire.
	Name        string
	TTLMillis   uint64
	Wait        bool
	DelayMillis uint64
	// Release.
	Token uint64
	// KeepAlive.
	Sessions []uint64
}

// Response is the answer to a call.
type Response struct {
	Kind Kind // the request's kind
	ID   uint64
	Code Code
	// Code != CodeOK.
	Message string
	Leader  string // client address of the leader, with CodeFailedPrecondition
	// Acquire: Granted, or else the lock is held (a try).
	Granted bool
	Token   uint64
	// Release.
	Released bool
	// KeepAlive: the sessions that are gone.
	Expired []uint64
}

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("wire: malformed frame")

const flagWait = 1

// AppendRequest appends req's frame to b.
func AppendRequest(b []byte, req *Request) []byte {
	p := make([]byte, 0, 32+len(req.Name)+10*len(req.Sessions))
	p = append(p, byte(req.Kind))
	p = binary.AppendUvarint(p, req.ID)
	switch req.Kind {
	case KindAcquire:
		p = binary.AppendUvarint(p, req.Session)
		p = appendString(p, req.Name)
		p = binary.AppendUvarint(p, req.TTLMillis)
		var f byte
		if req.Wait {
			f |= flagWait
		}
		p = append(p, f)
		p = binary.AppendUvarint(p, req.DelayMillis)
	case KindRelease:
		p = binary.AppendUvarint(p, req.Session)
		p = binary.AppendUvarint(p, req.Token)
	case KindKeepAlive:
		p = appendIDs(p, req.Sessions)
	}
	return appendFrame(b, p)
}

// AppendResponse appends resp's frame to b.
func AppendResponse(b []byte, resp *Response) []byte {
	p := make([]byte, 0, 32+len(resp.Message)+10*len(resp.Expired))
	p = append(p, byte(resp.Kind|respBit))
	p = binary.AppendUvarint(p, resp.ID)
	p = append(p, byte(resp.Code))
	if resp.Code != CodeOK {
		p = appendString(p, resp.Message)
		p = appendString(p, resp.Leader)
		return appendFrame(b, p)
	}
	switch resp.Kind {
	case KindAcquire:
		p = append(p, boolByte(resp.Granted))
		p = binary.AppendUvarint(p, resp.Token)
	case KindRelease:
		p = append(p, boolByte(resp.Released))
	case KindKeepAlive:
		p = appendIDs(p, resp.Expired)
	}
	return appendFrame(b, p)
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

func appendFrame(b, payload []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(payload)))
	return append(b, payload...)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendIDs(b []byte, ids []uint64) []byte {
	b = binary.AppendUvarint(b, uint64(len(ids)))
	for _, id := range ids {
		b = binary.AppendUvarint(b, id)
	}
	return b
}

// ReadFrame reads one frame's payload from r into buf (grown as needed)
// and returns it.
func ReadFrame(r *bufio.Reader, buf []byte) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("%w: frame length: %v", ErrMalformed, err)
	}
	if n == 0 || n > MaxFrame {
		return nil, fmt.Errorf("%w: frame of %d bytes; accepted: 1 to %d", ErrMalformed, n, MaxFrame)
	}
	if uint64(cap(buf)) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, fmt.Errorf("%w: truncated frame: %v", ErrMalformed, err)
	}
	return buf, nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrMalformed, what)
	}
}

func (d *decoder) byte(what string) byte {
	if d.err != nil || len(d.b) == 0 {
		d.fail(what + " missing")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 || n > 1 && d.b[n-1] == 0 {
		// A zero last byte is a non-minimal encoding: every value has
		// exactly one.
		d.fail(what + " truncated, overlong or not minimally encoded")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) string(what string, max int) string {
	n := d.uvarint(what + " length")
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)) || n > uint64(max) {
		d.fail(what + " longer than the frame or the limit")
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) ids(what string) []uint64 {
	n := d.uvarint(what + " count")
	if d.err != nil {
		return nil
	}
	if n > MaxKeepAlive || n > uint64(len(d.b)) {
		d.fail(fmt.Sprintf("%s count %d; accepted: at most %d", what, n, MaxKeepAlive))
		return nil
	}
	ids := make([]uint64, 0, n)
	for range n {
		ids = append(ids, d.uvarint(what))
	}
	return ids
}

func (d *decoder) finish() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail(fmt.Sprintf("%d bytes after the last field", len(d.b)))
	}
	return d.err
}

// maxString bounds strings in frames: lock names are checked against their
// own, smaller limit by the server.
const maxString = 4096

// DecodeRequest decodes a request payload.
func DecodeRequest(p []byte) (Request, error) {
	d := decoder{b: p}
	var r Request
	r.Kind = Kind(d.byte("kind"))
	r.ID = d.uvarint("call ID")
	switch r.Kind {
	case KindAcquire:
		r.Session = d.uvarint("session")
		r.Name = d.string("name", maxString)
		r.TTLMillis = d.uvarint("ttl")
		f := d.byte("flags")
		if f&^flagWait != 0 {
			d.fail(fmt.Sprintf("flags %#x: unknown bits", f))
		}
		r.Wait = f&flagWait != 0
		r.DelayMillis = d.uvarint("lock delay")
	case KindRelease:
		r.Session = d.uvarint("session")
		r.Token = d.uvarint("token")
	case KindKeepAlive:
		r.Sessions = d.ids("session")
	case KindPing:
	default:
		d.fail(fmt.Sprintf("request kind %d; accepted: 1 (acquire), 2 (release), 3 (keep-alive), 4 (ping)", r.Kind))
	}
	return r, d.finish()
}

// DecodeResponse decodes a response payload.
func DecodeResponse(p []byte) (Response, error) {
	d := decoder{b: p}
	var r Response
	k := Kind(d.byte("kind"))
	if d.err == nil && k&respBit == 0 {
		d.fail("a request where a response was expected")
	}
	r.Kind = k &^ respBit
	r.ID = d.uvarint("call ID")
	r.Code = Code(d.byte("code"))
	if d.err == nil && r.Code > maxCode {
		d.fail(fmt.Sprintf("code %d unknown", r.Code))
	}
	if r.Code != CodeOK {
		r.Message = d.string("message", maxString)
		r.Leader = d.string("leader", maxString)
		return r, d.finish()
	}
	switch r.Kind {
	case KindAcquire:
		r.Granted = d.byte("granted") == 1
		r.Token = d.uvarint("token")
	case KindRelease:
		r.Released = d.byte("released") == 1
	case KindKeepAlive:
		r.Expired = d.ids("expired")
	case KindPing:
	default:
		d.fail(fmt.Sprintf("response kind %d unknown", r.Kind))
	}
	return r, d.finish()
}
