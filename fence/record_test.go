package fence

import (
	"bytes"
	"testing"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/internal/wal"
)

// FuzzDecodeFloor checks the file store's record decoder, and the frame
// decoder in front of it, on arbitrary bytes: no panics, and what is
// accepted re-encodes to the same bytes.
func FuzzDecodeFloor(f *testing.F) {
	f.Add(encodeFloor(nil, "x", 34))
	f.Add(encodeFloor(nil, "a/b/c", 1<<63))
	f.Add(wal.AppendFrame(nil, encodeFloor(nil, "x", 33)))
	f.Add([]byte{})
	f.Add(make([]byte, 9))
	f.Add([]byte("12345678"))
	f.Fuzz(func(t *testing.T, b []byte) {
		res, tok, err := decodeFloor(b)
		if err == nil {
			if tok == 0 || res == "" {
				t.Fatalf("decodeFloor(%x) = %q, %d: accepted an empty resource or token 0", b, res, tok)
			}
			if !bytes.Equal(encodeFloor(nil, res, tok), b) {
				t.Fatalf("decodeFloor(%x) = %q, %d, which encodes differently", b, res, tok)
			}
		}
		if p, _, ok := wal.DecodeFrame(b, 1<<20); ok {
			recs, _ := wal.SplitRecords(p, 8+MaxResourceLen)
			for _, r := range recs {
				decodeFloor(r)
			}
		}
	})
}

func TestFloorRecordRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		res string
		tok fencer.Token
	}{{"x", 1}, {"ünïcode/ключ", 34}, {string(make([]byte, MaxResourceLen)), 1<<64 - 1}} {
		res, tok, err := decodeFloor(encodeFloor(nil, tc.res, tc.tok))
		if err != nil || res != tc.res || tok != tc.tok {
			t.Errorf("round trip of %.10q, %d = %.10q, %d, %v", tc.res, tc.tok, res, tok, err)
		}
	}
}
