package fence

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/internal/wal"
)

const (
	fileMagic  = "FENCEFL1"
	fileShards = 64
)

// FileOptions configure a FileStore. A nil *FileOptions, or a zero field,
// means the default.
type FileOptions struct {
	// CompactAt is the log size, in bytes, from which the file is rewritten
	// with one record per resource; after a rewrite the next one waits
	// until the file has doubled again. Zero means 16 MiB.
	CompactAt int64

	// Logger receives a warning when Open cuts off a torn tail left by a
	// crash, and when a rewrite fails. Nil discards.
	Logger *slog.Logger
}

// FileStore is a durable FloorStore in one append-only file: every raise
// to a higher token appends a (resource, token) record, and Raise returns
// only after the record is fsynced. Concurrent raises share one write and
// one fsync (group commit), so throughput grows with concurrency while each
// raise pays about one fsync of latency; each such batch carries a
// checksum. Opening the file replays it, taking the highest token per
// resource; a batch torn by a crash (never acknowledged, since it was not
// synced) is cut off. The file is rewritten with one record per resource
// when it grows.
//
// Floors are also kept in memory, in a map sharded by resource, so Load
// never touches the disk and raises of different resources only meet in
// the group commit. Memory and file both grow with the number of distinct
// resources.
//
// A FileStore is safe for concurrent use. Only one FileStore (in any
// process) can have the file open at a time. Close it when done.
type FileStore struct {
	log    *wal.Log
	seed   maphash.Seed
	shards [fileShards]fileShard
}

type fileShard struct {
	mu     sync.Mutex
	floors map[string]*fileFloor
}

type fileFloor struct {
	token  fencer.Token
	ticket wal.Ticket // the record that set token; wait for it before answering
}

var _ FloorStore = (*FileStore)(nil)

// OpenFileStore opens (or creates) the floor file at path and replays it.
// It fails if the file is in use by another FileStore, is not a floor file,
// or is damaged anywhere but at its end: a crash can only tear the last,
// unacknowledged write, so damage before a good record means the disk or
// another program changed the file, and refusing it is safer than
// forgetting floors.
func OpenFileStore(path string, opts *FileOptions) (*FileStore, error) {
	var o FileOptions
	if opts != nil {
		o = *opts
	}
	s := &FileStore{seed: maphash.MakeSeed()}
	for i := range s.shards {
		s.shards[i].floors = make(map[string]*fileFloor)
	}
	l, err := wal.Open(path, wal.Options{
		Magic:     fileMagic,
		MaxRecord: 8 + MaxResourceLen,
		CompactAt: o.CompactAt,
		Snapshot:  s.snapshot,
		Logger:    o.Logger,
	}, func(rec []byte) error {
		resource, token, err := decodeFloor(rec)
		if err != nil {
			return err
		}
		sh := s.shard(resource)
		if f := sh.floors[resource]; f == nil {
			sh.floors[resource] = &fileFloor{token: token}
		} else if token > f.token {
			f.token = token
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("fence: open the floor file: %w", err)
	}
	s.log = l
	return s, nil
}

// encodeFloor appends the record "resource's floor is at least token".
func encodeFloor(b []byte, resource string, token fencer.Token) []byte {
	b = binary.LittleEndian.AppendUint64(b, uint64(token))
	return append(b, resource...)
}

// decodeFloor decodes a record made by encodeFloor.
func decodeFloor(rec []byte) (string, fencer.Token, error) {
	if len(rec) < 9 {
		return "", 0, fmt.Errorf("a floor record of %d bytes; a record has an 8-byte token and a resource of at least 1 byte", len(rec))
	}
	token := fencer.Token(binary.LittleEndian.Uint64(rec))
	if token == 0 {
		return "", 0, errors.New("a floor record with token 0")
	}
	return string(rec[8:]), token, nil
}

func (s *FileStore) shard(resource string) *fileShard {
	return &s.shards[maphash.String(s.seed, resource)%fileShards]
}

// snapshot writes one record per resource; the log calls it to rewrite
// the file.
func (s *FileStore) snapshot(emit func([]byte)) error {
	type rf struct {
		r string
		t fencer.Token
	}
	var recs []rf
	var buf []byte
	for i := range s.shards {
		sh := &s.shards[i]
		recs = recs[:0]
		sh.mu.Lock()
		for r, f := range sh.floors {
			recs = append(recs, rf{r, f.token})
		}
		sh.mu.Unlock()
		for _, x := range recs {
			buf = encodeFloor(buf[:0], x.r, x.t)
			emit(buf)
		}
	}
	return nil
}

// Load returns the floor of resource, or 0, from memory. It waits until
// that floor is durable, so that nothing is decided on a floor a crash
// could still take back.
func (s *FileStore) Load(ctx context.Context, resource string) (fencer.Token, error) {
	sh := s.shard(resource)
	sh.mu.Lock()
	var token fencer.Token
	var ticket wal.Ticket
	if f := sh.floors[resource]; f != nil {
		token, ticket = f.token, f.ticket
	}
	sh.mu.Unlock()
	if err := s.wait(ctx, ticket); err != nil {
		return 0, err
	}
	return token, nil
}

// Raise implements FloorStore. A raise to a higher token appends a record
// and waits for its fsync; a raise to the current floor, and a refusal,
// wait until that floor's record is durable (usually it already is). It
// fails with ErrClosed after Close, and with the write error for good once
// a write or fsync of the file has failed.
func (s *FileStore) Raise(ctx context.Context, resource string, token fencer.Token) (fencer.Token, bool, error) {
	sh := s.shard(resource)
	sh.mu.Lock()
	f := sh.floors[resource]
	if f == nil {
		f = &fileFloor{}
	}
	if token > f.token {
		// The record is appended under the shard's lock so that a rewrite
		// (which reads the map under the same lock) never misses it.
		t, err := s.log.Append(encodeFloor(make([]byte, 0, 8+len(resource)), resource, token))
		if err != nil {
			sh.mu.Unlock()
			return 0, false, s.mapErr(err)
		}
		f.token, f.ticket = token, t
		sh.floors[resource] = f
	}
	floor, ticket := f.token, f.ticket
	sh.mu.Unlock()
	if err := s.wait(ctx, ticket); err != nil {
		return 0, false, err
	}
	return floor, token == floor, nil
}

func (s *FileStore) wait(ctx context.Context, t wal.Ticket) error {
	return s.mapErr(s.log.Wait(ctx, t))
}

func (s *FileStore) mapErr(err error) error {
	if errors.Is(err, wal.ErrClosed) {
		return ErrClosed
	}
	return err
}

// FileStats are counters of a FileStore's file.
type FileStats struct {
	Size        int64  // bytes in the file now
	Records     uint64 // records appended since Open
	Syncs       uint64 // fsyncs since Open; Records/Syncs is the group commit's batch size
	Compactions uint64 // rewrites since Open
	TornBytes   int64  // bytes of a torn tail that Open cut off
}

// Stats returns counters of the file.
func (s *FileStore) Stats() FileStats {
	st := s.log.Stats()
	return FileStats{Size: st.Size, Records: st.Records, Syncs: st.Syncs, Compactions: st.Compactions, TornBytes: st.TornBytes}
}

// Close waits until every raise already made is durable and closes the
// file. Raise fails with ErrClosed afterwards; Load still answers from
// memory. It returns the file's write error, if any. It is safe to call
// more than once.
func (s *FileStore) Close() error {
	if err := s.log.Close(); err != nil {
		return fmt.Errorf("fence: close the floor file: %w", err)
	}
	return nil
}
