package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/fence"
	"github.com/fencerlock/fencer/internal/wal"
)

const (
	// MaxKeyLen is the longest key, in bytes.
	MaxKeyLen = 256
	// MaxValueLen is the largest value, in bytes.
	MaxValueLen = 1 << 20
	// DefaultLogEntries is the accept log's length when
	// Config.LogEntries is zero.
	DefaultLogEntries = 100_000

	logFile = "objects.log"
	magic   = "FENCOBJ1"
	shards  = 64

	recPut   = 1 // key, floor, value
	recRaise = 2 // key, floor
)

// Config configures a Server. The zero value is an in-memory store with
// logging discarded.
type Config struct {
	// DataDir is the directory of the store's log file, created if
	// missing. Empty means in memory: nothing survives the process.
	DataDir string

	// Logger receives the server's errors (a failed write, a torn log
	// tail cut off at Open). Nil discards them.
	Logger *slog.Logger

	// LogEntries is how many accept-log entries are kept in memory (about
	// 100 bytes each plus the key). Zero means DefaultLogEntries; it must
	// not be negative.
	LogEntries int
}

// Server is the fenced key-value store. It is safe for concurrent use.
// Close it when done.
type Server struct {
	log    *slog.Logger
	wal    *wal.Log // nil in memory
	seed   maphash.Seed
	shards [shards]shard
	alog   acceptLog
	mux    *http.ServeMux
}

type shard struct {
	mu   sync.Mutex
	objs map[string]*object
}

// object is a key's state. value is never modified in place, only
// replaced, so it can be handed out without the shard's lock.
type object struct {
	floor  fencer.Token
	value  []byte
	has    bool
	ticket wal.Ticket // the record that produced this state
}

// Open opens the store: it replays the log in cfg.DataDir, if any. It
// fails if the directory cannot be created, the log is in use by another
// Server, or the log is damaged anywhere but at its torn end.
func Open(cfg Config) (*Server, error) { return open(cfg, 0) }

// open is Open with the log's rewrite threshold (0: the default), which
// tests lower.
func open(cfg Config, compactAt int64) (*Server, error) {
	if cfg.LogEntries < 0 {
		return nil, &fencer.InvalidError{Field: "accept log length", Value: strconv.Itoa(cfg.LogEntries),
			Reason: "negative", Accepted: "0 (the default, 100000) or more"}
	}
	if cfg.LogEntries == 0 {
		cfg.LogEntries = DefaultLogEntries
	}
	s := &Server{log: cfg.Logger, seed: maphash.MakeSeed()}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.alog.entries = make([]Entry, 0, min(cfg.LogEntries, 1024))
	s.alog.max = cfg.LogEntries
	for i := range s.shards {
		s.shards[i].objs = make(map[string]*object)
	}
	if cfg.DataDir != "" {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("store: create the data directory: %w", err)
		}
		l, err := wal.Open(filepath.Join(cfg.DataDir, logFile), wal.Options{
			Magic:     magic,
			MaxRecord: 1 + 8 + binary.MaxVarintLen64 + MaxKeyLen + MaxValueLen,
			CompactAt: compactAt,
			Snapshot:  s.snapshot,
			Logger:    s.log,
		}, s.replay)
		if err != nil {
			return nil, fmt.Errorf("store: open the data directory %s: %w", cfg.DataDir, err)
		}
		s.wal = l
	}
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("PUT /v1/objects/{key...}", s.handlePut)
	s.mux.HandleFunc("GET /v1/objects/{key...}", s.handleGet)
	s.mux.HandleFunc("GET /v1/log", s.handleLog)
	return s, nil
}

// encodeRecord appends a log record: the kind, the floor, the key and,
// for recPut, the value.
func encodeRecord(b []byte, kind byte, key string, floor fencer.Token, value []byte) []byte {
	b = append(b, kind)
	b = binary.LittleEndian.AppendUint64(b, uint64(floor))
	b = binary.AppendUvarint(b, uint64(len(key)))
	b = append(b, key...)
	if kind == recPut {
		b = append(b, value...)
	}
	return b
}

// decodeRecord decodes a record made by encodeRecord. value aliases rec.
func decodeRecord(rec []byte) (kind byte, key string, floor fencer.Token, value []byte, err error) {
	if len(rec) < 1+8+1 {
		return 0, "", 0, nil, fmt.Errorf("a record of %d bytes is too short", len(rec))
	}
	kind = rec[0]
	if kind != recPut && kind != recRaise {
		return 0, "", 0, nil, fmt.Errorf("unknown record kind %d", kind)
	}
	floor = fencer.Token(binary.LittleEndian.Uint64(rec[1:]))
	if floor == 0 {
		return 0, "", 0, nil, errors.New("a record with token 0")
	}
	n, w := binary.Uvarint(rec[9:])
	if w <= 0 || w != uvarintLen(n) || n == 0 || n > MaxKeyLen || n > uint64(len(rec)-9-w) {
		return 0, "", 0, nil, errors.New("a record with a bad key length")
	}
	rest := rec[9+w:]
	key = string(rest[:n])
	switch {
	case kind == recPut:
		value = rest[n:]
	case len(rest) != int(n):
		return 0, "", 0, nil, errors.New("a floor record with trailing bytes")
	}
	return kind, key, floor, value, nil
}

// uvarintLen is the length of the canonical uvarint encoding of n; the
// decoder refuses others, so that every record has one encoding.
func uvarintLen(n uint64) int { return len(binary.AppendUvarint(nil, n)) }

// replay applies one record from the log, the same way the live path
// does: a token at least the floor raises it and, for a PUT, sets the
// value.
func (s *Server) replay(rec []byte) error {
	kind, key, floor, value, err := decodeRecord(rec)
	if err != nil {
		return err
	}
	sh := s.shard(key)
	o := sh.objs[key]
	if o == nil {
		o = &object{}
		sh.objs[key] = o
	}
	if floor >= o.floor {
		o.floor = floor
		if kind == recPut {
			o.value, o.has = append([]byte(nil), value...), true
		}
	}
	return nil
}

// snapshot writes the state as one record per key, for a rewrite of the
// log.
func (s *Server) snapshot(emit func([]byte)) error {
	type kv struct {
		key string
		o   object
	}
	var objs []kv
	var buf []byte
	for i := range s.shards {
		sh := &s.shards[i]
		objs = objs[:0]
		sh.mu.Lock()
		for k, o := range sh.objs {
			objs = append(objs, kv{k, *o})
		}
		sh.mu.Unlock()
		for _, x := range objs {
			kind := byte(recRaise)
			if x.o.has {
				kind = recPut
			}
			buf = encodeRecord(buf[:0], kind, x.key, x.o.floor, x.o.value)
			emit(buf)
		}
	}
	return nil
}

func (s *Server) shard(key string) *shard {
	return &s.shards[maphash.String(s.seed, key)%shards]
}

// validateKey returns an *fencer.InvalidError for a key the store refuses.
func validateKey(key string) error {
	bad := func(reason string) error {
		return &fencer.InvalidError{Field: "key", Value: key, Reason: reason,
			Accepted: "1 to 256 bytes of UTF-8 with no control characters"}
	}
	switch {
	case key == "":
		return bad("it is empty")
	case len(key) > MaxKeyLen:
		return bad("it is " + strconv.Itoa(len(key)) + " bytes long")
	case !utf8.ValidString(key):
		return bad("it is not valid UTF-8")
	}
	for i, r := range key {
		if unicode.IsControl(r) {
			return bad("it has a control character at byte " + strconv.Itoa(i))
		}
	}
	return nil
}

// result is the outcome of a fenced operation.
type result struct {
	floor    fencer.Token
	accepted bool
	value    []byte // GET: the value read
	has      bool   // GET: whether there is a value
	ticket   wal.Ticket
}

// put applies a PUT: atomically per key, the check, the new floor and
// value, the log record and the accept-log entry.
func (s *Server) put(key string, token fencer.Token, value []byte) (result, error) {
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	o := sh.objs[key]
	if o == nil {
		o = &object{}
	}
	if token < o.floor {
		s.alog.add(Entry{Op: "put", Key: key, Token: token, Floor: o.floor, ValueLen: len(value)})
		return result{floor: o.floor, ticket: o.ticket}, nil
	}
	var t wal.Ticket
	if s.wal != nil {
		var err error
		if t, err = s.wal.Append(encodeRecord(nil, recPut, key, token, value)); err != nil {
			return result{}, err
		}
	}
	*o = object{floor: token, value: value, has: true, ticket: t}
	sh.objs[key] = o
	s.alog.add(Entry{Op: "put", Key: key, Token: token, Accepted: true, Floor: token, ValueLen: len(value)})
	return result{floor: token, accepted: true, ticket: t}, nil
}

// get applies a GET: the check, a raised floor if the token is higher,
// the value read and the accept-log entry.
func (s *Server) get(key string, token fencer.Token) (result, error) {
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	o := sh.objs[key]
	if o == nil {
		o = &object{}
	}
	if token < o.floor {
		s.alog.add(Entry{Op: "get", Key: key, Token: token, Floor: o.floor})
		return result{floor: o.floor, ticket: o.ticket}, nil
	}
	if token > o.floor {
		if s.wal != nil {
			t, err := s.wal.Append(encodeRecord(nil, recRaise, key, token, nil))
			if err != nil {
				return result{}, err
			}
			o.ticket = t
		}
		o.floor = token
		sh.objs[key] = o
	}
	s.alog.add(Entry{Op: "get", Key: key, Token: token, Accepted: true, Floor: token, ValueLen: len(o.value)})
	return result{floor: token, accepted: true, value: o.value, has: o.has, ticket: o.ticket}, nil
}

// durable waits until the state a result reports is on disk.
func (s *Server) durable(ctx context.Context, t wal.Ticket) error {
	if s.wal == nil {
		return nil
	}
	return s.wal.Wait(ctx, t)
}

// fenced parses and validates the key and token of a request, or writes
// the 400 response and returns false.
func fenced(w http.ResponseWriter, r *http.Request) (string, fencer.Token, bool) {
	key := r.PathValue("key")
	if err := validateKey(key); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return "", 0, false
	}
	token, err := fence.TokenFromHeader(r.Header)
	if err != nil {
		fence.WriteError(w, err)
		return "", 0, false
	}
	return key, token, true
}

func (s *Server) handlePut(w http.ResponseWriter, r *http.Request) {
	key, token, ok := fenced(w, r)
	if !ok {
		return
	}
	if r.ContentLength > MaxValueLen {
		tooLarge(w, r.ContentLength)
		return
	}
	value, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxValueLen))
	if err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			tooLarge(w, -1)
			return
		}
		http.Error(w, "store: reading the request body failed: "+err.Error(), http.StatusBadRequest)
		return
	}
	res, err := s.put(key, token, value)
	s.respond(w, r, "put", key, token, res, err)
}

func (s *Server) handleGet(w http.ResponseWriter, r *http.Request) {
	key, token, ok := fenced(w, r)
	if !ok {
		return
	}
	res, err := s.get(key, token)
	s.respond(w, r, "get", key, token, res, err)
}

// respond waits until res is durable and writes the response.
func (s *Server) respond(w http.ResponseWriter, r *http.Request, op, key string, token fencer.Token, res result, err error) {
	if err == nil {
		err = s.durable(r.Context(), res.ticket)
	}
	switch {
	case err != nil:
		if r.Context().Err() == nil {
			s.log.Error("store: a request could not be made durable", "op", op, "key", key, "token", token, "err", err)
		}
		code := http.StatusInternalServerError
		if errors.Is(err, wal.ErrClosed) {
			code = http.StatusServiceUnavailable
		}
		http.Error(w, "store: the request could not be made durable, so it may or may not have taken effect; the store needs attention", code)
	case !res.accepted:
		fence.WriteError(w, &fence.StaleError{Resource: key, Token: token, Floor: res.floor})
	case op == "put":
		w.WriteHeader(http.StatusNoContent)
	case !res.has:
		http.Error(w, fmt.Sprintf("store: key %q has no value (token %d accepted)", key, token), http.StatusNotFound)
	default:
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(len(res.value)))
		w.Write(res.value)
	}
}

func tooLarge(w http.ResponseWriter, n int64) {
	msg := "store: the value is larger than 1 MiB; accepted: values of at most 1048576 bytes"
	if n >= 0 {
		msg = fmt.Sprintf("store: the value is %d bytes; accepted: values of at most 1048576 bytes", n)
	}
	http.Error(w, msg, http.StatusRequestEntityTooLarge)
}

// Handler returns the HTTP handler of the API.
func (s *Server) Handler() http.Handler { return s.mux }

// Serve serves the API on ln until ctx is done, then shuts down
// gracefully (waiting up to 5 s for requests in flight) and returns nil.
// It returns the error if serving fails. It closes ln. Call Close after it
// returns.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("store: serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	<-errc // http.ErrServerClosed
	if err != nil {
		srv.Close()
		return fmt.Errorf("store: shut down: %w", err)
	}
	return nil
}

// Close makes everything accepted durable and closes the log file; with
// a data directory, requests still arriving get 503 afterwards. It returns
// the log's write error, if any. It is safe to call more than once.
func (s *Server) Close() error {
	if s.wal == nil {
		return nil
	}
	if err := s.wal.Close(); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}
