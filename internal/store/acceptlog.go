package store

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strconv"
	"sync"

	"github.com/fencerlock/fencer"
)

// Entry is one token decision in the accept log, served by GET /v1/log as
// a line of JSON.
type Entry struct {
	// Seq numbers the decisions from 1 since the server started; on each
	// key, decisions have increasing Seq in the order they were made.
	Seq uint64 `json:"seq"`
	// Op is "put" or "get".
	Op string `json:"op"`
	// Key is the object's key.
	Key string `json:"key"`
	// Token is the request's fencing token.
	Token fencer.Token `json:"token"`
	// Accepted reports whether the token was accepted.
	Accepted bool `json:"accepted"`
	// Floor is the key's floor after the decision: Token when accepted,
	// the higher token that refused it otherwise.
	Floor fencer.Token `json:"floor"`
	// ValueLen is the length of the value written (put) or read (an
	// accepted get; 0 for a key without a value).
	ValueLen int `json:"value_len"`
}

// acceptLog is a bounded ring of the most recent entries.
type acceptLog struct {
	mu      sync.Mutex
	entries []Entry // a ring once it has max entries
	start   int     // index of the oldest entry
	max     int
	seq     uint64
}

// add assigns e the next sequence number and records it. Callers hold the
// key's shard lock, which makes Seq follow the decisions on each key.
func (l *acceptLog) add(e Entry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	e.Seq = l.seq
	if len(l.entries) < l.max {
		l.entries = append(l.entries, e)
		return
	}
	l.entries[l.start] = e
	l.start = (l.start + 1) % l.max
}

// since returns a copy of the entries with Seq > after, oldest first.
func (l *acceptLog) since(after uint64) []Entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(l.entries)
	// Entries are in Seq order from start; skip the ones at or before after.
	first := l.seq - uint64(n) + 1 // Seq of the oldest entry
	skip := 0
	if after >= first {
		skip = int(min(after-first+1, uint64(n)))
	}
	out := make([]Entry, 0, n-skip)
	for i := skip; i < n; i++ {
		out = append(out, l.entries[(l.start+i)%len(l.entries)])
	}
	return out
}

func (s *Server) handleLog(w http.ResponseWriter, r *http.Request) {
	var after uint64
	if a := r.URL.Query().Get("after"); a != "" {
		var err error
		if after, err = strconv.ParseUint(a, 10, 64); err != nil {
			http.Error(w, (&fencer.InvalidError{Field: "after", Value: a, Accepted: "a sequence number: a decimal integer from 0"}).Error(), http.StatusBadRequest)
			return
		}
	}
	entries := s.alog.since(after)
	w.Header().Set("Content-Type", "application/x-ndjson")
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	for i := range entries {
		if err := enc.Encode(&entries[i]); err != nil {
			return // the client went away
		}
	}
	bw.Flush()
}
