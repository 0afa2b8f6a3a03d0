package store

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/internal/wal"
)

// FuzzDecodeRecord checks the log record decoder on arbitrary bytes: no
// panics, and what it accepts re-encodes to the same bytes.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(encodeRecord(nil, recPut, "k", 34, []byte("value")))
	f.Add(encodeRecord(nil, recPut, "k", 1, nil))
	f.Add(encodeRecord(nil, recRaise, "a/b", 1<<63, nil))
	f.Add(wal.AppendFrame(nil, encodeRecord(nil, recRaise, "x", 33, nil)))
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Add([]byte{2, 1, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte("\x0100000000\x86\x00000000")) // a key length in a non-canonical uvarint
	f.Fuzz(func(t *testing.T, b []byte) {
		kind, key, floor, value, err := decodeRecord(b)
		if err != nil {
			return
		}
		if floor == 0 || key == "" || len(key) > MaxKeyLen {
			t.Fatalf("decodeRecord(%x) accepted key %q, floor %d", b, key, floor)
		}
		if re := encodeRecord(nil, kind, key, floor, value); !bytes.Equal(re, b) {
			t.Fatalf("decodeRecord(%x) = %d %q %d %q, which encodes as %x", b, kind, key, floor, value, re)
		}
	})
}

// state returns the store's keys as "floor value|-" strings.
func (s *Server) state() map[string]string {
	out := map[string]string{}
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for k, o := range sh.objs {
			v := "-"
			if o.has {
				v = string(o.value)
			}
			out[k] = fmt.Sprintf("%d %s", o.floor, v)
		}
		sh.mu.Unlock()
	}
	return out
}

// TestCompactionKeepsState runs random PUTs and GETs, concurrently, with
// a log rewritten every few KiB while they run, and checks that replaying
// the log gives exactly the state the server had.
func TestCompactionKeepsState(t *testing.T) {
	dir := t.TempDir()
	s, err := open(Config{DataDir: dir}, 4<<10)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range 8 {
		rng := rand.New(rand.NewPCG(uint64(w), 1))
		wg.Go(func() {
			for i := range 150 {
				key := fmt.Sprint("k", rng.IntN(6))
				tok := fencer.Token(1 + i + rng.IntN(20))
				var res result
				var err error
				if rng.IntN(3) == 0 {
					res, err = s.get(key, tok)
				} else {
					res, err = s.put(key, tok, fmt.Appendf(nil, "%s=%d/%d/%d", key, tok, w, i))
				}
				if err == nil {
					err = s.wal.Wait(t.Context(), res.ticket)
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if st := s.wal.Stats(); st.Compactions == 0 {
		t.Fatalf("no compaction happened: %+v", st)
	}
	want := s.state()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got := s2.state(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after compactions and a reopen:\n%v\nwant\n%v", got, want)
	}
}
