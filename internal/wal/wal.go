package wal

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
)

var (
	// ErrClosed is returned by Append and Wait after Close.
	ErrClosed = errors.New("wal: log closed")
	// ErrCorrupt is matched by the error Open returns for a file that is not
	// a log of the expected format or that is damaged before its end.
	ErrCorrupt = errors.New("wal: log file is corrupt")
)

const (
	frameHeader = 8
	// DefaultMaxRecord is the largest record when Options.MaxRecord is zero.
	DefaultMaxRecord = 16 << 20
	// DefaultCompactAt is the log size that first triggers a rewrite when
	// Options.CompactAt is zero.
	DefaultCompactAt = 16 << 20
	// batchBytes is the payload size from which a batch takes no more
	// records, unless it is empty.
	batchBytes = 4 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Options configure a Log. The zero value of every field but Magic means
// its default.
type Options struct {
	// Magic identifies the file's format: exactly 8 bytes, written at the
	// start of a new file and checked when an existing one is opened, so
	// that one kind of log is never replayed as another.
	Magic string

	// MaxRecord is the largest record, in bytes, that Append accepts and
	// Open reads. Zero means DefaultMaxRecord (16 MiB). It bounds the
	// memory a damaged length field can make Open allocate.
	MaxRecord int

	// CompactAt is the file size, in bytes, from which the log is rewritten
	// from Snapshot; after a rewrite the next one waits until the file has
	// also doubled. Zero means DefaultCompactAt (16 MiB). It has no effect
	// without Snapshot.
	CompactAt int64

	// Snapshot, if not nil, writes the caller's whole current state as
	// records by calling emit, which copies each record. The log calls it
	// from its writer goroutine, with no lock of its own held, while Append
	// may be called concurrently; the records appended during a rewrite are
	// written after the snapshot, so replaying a snapshot followed by
	// records the snapshot already reflects must give the same state
	// (idempotent records, such as "the floor is at least t", do). Nil
	// disables compaction.
	Snapshot func(emit func(rec []byte)) error

	// Logger receives a warning for a torn tail cut off at Open and for a
	// failed rewrite. Nil discards.
	Logger *slog.Logger
}

// maxFrame is the largest frame payload a log with these options writes or
// reads.
func (o *Options) maxFrame() int {
	return max(batchBytes, o.MaxRecord+binary.MaxVarintLen64)
}

// Ticket identifies the batch an appended record belongs to; pass it to
// Wait. The zero Ticket is always durable.
type Ticket uint64

// Stats are counters of a Log's activity.
type Stats struct {
	Size        int64  // bytes in the file now
	Records     uint64 // records appended since Open
	Syncs       uint64 // fsyncs of appended batches since Open
	Compactions uint64 // rewrites since Open
	TornBytes   int64  // bytes of torn tail cut off by Open
}

// Log is an open log file. It is safe for concurrent use. Close it to stop
// its writer goroutine and release the file lock.
type Log struct {
	path string
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	queue    []*batch // not yet written, oldest first; Append adds to the last
	flushing *batch   // being written, or nil
	durable  uint64   // highest batch sequence number on disk
	err      error    // sticky: a failed write or sync
	closed   bool
	stats    Stats

	wake chan struct{} // capacity 1: there is something to write
	quit chan struct{} // closed by Close
	done chan struct{} // closed when the writer has exited

	// Owned by the writer goroutine (and by Open and Close outside its
	// lifetime).
	f        *os.File
	size     int64
	baseSize int64 // size after the last rewrite (or at Open)
}

// batch is the records written with one write and one fsync.
type batch struct {
	seq  uint64
	buf  []byte // a frame header's room, then the records
	done chan struct{}
}

func newBatch(seq uint64) *batch {
	return &batch{seq: seq, buf: make([]byte, frameHeader, 4096), done: make(chan struct{})}
}

func (b *batch) empty() bool { return len(b.buf) == frameHeader }

// Open opens the log at path, creating it (and its directory) if missing,
// and calls replay with each record in order, from the goroutine that
// called Open. An error from replay aborts Open and is returned wrapped. The
// slice passed to replay is only valid during the call.
//
// The file is locked (flock) while the Log is open: a second Open of the
// same path, in this process or another, fails instead of corrupting it.
func Open(path string, opts Options, replay func(rec []byte) error) (*Log, error) {
	if len(opts.Magic) != 8 {
		return nil, fmt.Errorf("wal: magic %q is %d bytes; it must be exactly 8", opts.Magic, len(opts.Magic))
	}
	if opts.MaxRecord <= 0 {
		opts.MaxRecord = DefaultMaxRecord
	}
	if opts.CompactAt <= 0 {
		opts.CompactAt = DefaultCompactAt
	}
	l := &Log{
		path:  path,
		opts:  opts,
		log:   opts.Logger,
		queue: []*batch{newBatch(1)},
		wake:  make(chan struct{}, 1),
		quit:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("wal: create the directory of %s: %w", path, err)
	}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		f, _, err := l.createFile(path, nil)
		if err != nil {
			return nil, err
		}
		f.Close()
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("wal: open %s: %w", path, err)
	}
	if err := lockFile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("wal: %s is in use by another open log (another process?): %w", path, err)
	}
	// A rewrite interrupted by a crash leaves its temporary file behind.
	if err := os.Remove(path + ".tmp"); err != nil && !errors.Is(err, os.ErrNotExist) {
		f.Close()
		return nil, fmt.Errorf("wal: remove the leftover %s.tmp: %w", path, err)
	}
	good, torn, err := replayFile(f, &opts, replay)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("wal: %s: %w", path, err)
	}
	if torn > 0 {
		l.log.Warn("cut off a torn tail left by a crash", "path", path, "offset", good, "bytes", torn)
		if err := f.Truncate(good); err != nil {
			f.Close()
			return nil, fmt.Errorf("wal: cut the torn tail off %s: %w", path, err)
		}
	}
	// Records a crashed predecessor wrote but never synced were just
	// replayed and may be built on: make them durable first.
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("wal: sync %s: %w", path, err)
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("wal: seek %s: %w", path, err)
	}
	l.f, l.size, l.baseSize = f, good, good
	l.stats.Size, l.stats.TornBytes = good, torn
	go l.writer()
	return l, nil
}

// frameWriter writes records as batch frames of at most maxFrame bytes.
type frameWriter struct {
	w     io.Writer
	max   int
	batch []byte
	err   error
}

func (fw *frameWriter) add(rec []byte) {
	if len(fw.batch) > frameHeader && len(fw.batch)+binary.MaxVarintLen64+len(rec) > fw.max {
		fw.flush()
	}
	if len(fw.batch) == 0 {
		fw.batch = append(fw.batch, make([]byte, frameHeader)...)
	}
	fw.batch = appendRecord(fw.batch, rec)
}

func (fw *frameWriter) flush() {
	if len(fw.batch) > frameHeader && fw.err == nil {
		sealFrame(fw.batch)
		_, fw.err = fw.w.Write(fw.batch)
	}
	fw.batch = fw.batch[:0]
}

// createFile writes a new log file holding the magic and the records fill
// adds next to path, syncs it and renames it over path, so that path is
// never seen half written. It returns the new file, open, locked and
// positioned at its end. renamed reports whether path names the new file
// even though err is not nil: then the directory could not be synced, the
// caller cannot know which file a crash would leave, and must stop using
// the log.
func (l *Log) createFile(path string, fill func(add func(rec []byte)) error) (f *os.File, renamed bool, err error) {
	tmp := path + ".tmp"
	f, err = os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("wal: create %s: %w", tmp, err)
	}
	fail := func(err error) (*os.File, bool, error) {
		f.Close()
		os.Remove(tmp)
		return nil, false, err
	}
	if err := lockFile(f); err != nil {
		return fail(fmt.Errorf("wal: lock %s: %w", tmp, err))
	}
	bw := bufio.NewWriterSize(f, 256<<10)
	bw.WriteString(l.opts.Magic)
	if fill != nil {
		fw := &frameWriter{w: bw, max: l.opts.maxFrame()}
		if err := fill(fw.add); err != nil {
			return fail(err)
		}
		fw.flush()
		if fw.err != nil {
			return fail(fmt.Errorf("wal: write %s: %w", tmp, fw.err))
		}
	}
	if err := bw.Flush(); err != nil {
		return fail(fmt.Errorf("wal: write %s: %w", tmp, err))
	}
	if err := f.Sync(); err != nil {
		return fail(fmt.Errorf("wal: sync %s: %w", tmp, err))
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(fmt.Errorf("wal: rename %s to %s: %w", tmp, path, err))
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		f.Close()
		return nil, true, fmt.Errorf("wal: sync the directory of %s after replacing it: %w", path, err)
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		f.Close()
		return nil, true, fmt.Errorf("wal: seek %s: %w", path, err)
	}
	return f, false, nil
}

// replayFile reads f from the start, checks the magic and calls replay for
// every record of every intact frame. It returns the offset just past the
// last intact frame and the length of the torn tail after it.
func replayFile(f *os.File, opts *Options, replay func([]byte) error) (good, torn int64, err error) {
	st, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	total := st.Size()
	r := bufio.NewReaderSize(f, 256<<10)
	magic := make([]byte, 8)
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != opts.Magic {
		return 0, 0, fmt.Errorf("%w: it does not start with %q: not a log of this kind", ErrCorrupt, opts.Magic)
	}
	good = 8
	maxFrame := opts.maxFrame()
	var hdr [frameHeader]byte
	var payload []byte
	for good < total {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			break
		}
		n, ok := checkHeader(hdr[:], maxFrame, total-good-frameHeader)
		if !ok {
			break
		}
		if cap(payload) < n {
			payload = make([]byte, n)
		}
		payload = payload[:n]
		if _, err := io.ReadFull(r, payload); err != nil {
			break
		}
		if frameCRC(hdr[:4], payload) != binary.LittleEndian.Uint32(hdr[4:]) {
			break
		}
		// An intact frame with a bad record inside was written that way:
		// that is not a crash.
		err := forEachRecord(payload, opts.MaxRecord, func(rec []byte) error {
			if err := replay(rec); err != nil {
				return fmt.Errorf("a record in the batch at offset %d: %w", good, err)
			}
			return nil
		})
		if err != nil {
			return 0, 0, fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
		good += frameHeader + int64(n)
	}
	if good == total {
		return good, 0, nil
	}
	tail := make([]byte, total-good)
	if _, err := f.ReadAt(tail, good); err != nil {
		return 0, 0, fmt.Errorf("read the tail at offset %d: %w", good, err)
	}
	if at := findFrame(tail[1:], opts); at >= 0 {
		return 0, 0, fmt.Errorf("%w: the batch at offset %d is damaged but an intact one follows at offset %d; a crash cannot do that, so the disk or another program changed the file; restore it from a backup",
			ErrCorrupt, good, good+1+int64(at))
	}
	return good, total - good, nil
}

// checkHeader returns the payload length a frame header announces and
// whether it is plausible: at least 2 (one record of one byte), at most
// max and at most avail.
func checkHeader(hdr []byte, max int, avail int64) (int, bool) {
	n := binary.LittleEndian.Uint32(hdr[:4])
	if n < 2 || uint64(n) > uint64(max) || int64(n) > avail {
		return 0, false
	}
	return int(n), true
}

// DecodeFrame decodes the frame at the start of b. It returns the payload
// (aliasing b) and the frame's length, or ok false if b does not start with
// a complete, intact frame of at most max payload bytes. It does not check
// the records inside; see SplitRecords.
func DecodeFrame(b []byte, max int) (payload []byte, n int, ok bool) {
	if len(b) < frameHeader {
		return nil, 0, false
	}
	size, ok := checkHeader(b, max, int64(len(b)-frameHeader))
	if !ok {
		return nil, 0, false
	}
	payload = b[frameHeader : frameHeader+size]
	if frameCRC(b[:4], payload) != binary.LittleEndian.Uint32(b[4:8]) {
		return nil, 0, false
	}
	return payload, frameHeader + size, true
}

// SplitRecords returns the records of a frame's payload (aliasing it), or
// an error if it is not a sequence of records of 1 to maxRecord bytes.
func SplitRecords(payload []byte, maxRecord int) ([][]byte, error) {
	var recs [][]byte
	err := forEachRecord(payload, maxRecord, func(r []byte) error {
		recs = append(recs, r)
		return nil
	})
	return recs, err
}

func forEachRecord(payload []byte, maxRecord int, f func([]byte) error) error {
	if len(payload) == 0 {
		return errors.New("an empty batch")
	}
	for len(payload) > 0 {
		n, w := binary.Uvarint(payload)
		if w <= 0 || n == 0 || n > uint64(maxRecord) || n > uint64(len(payload)-w) {
			return errors.New("a batch with a bad record length")
		}
		if err := f(payload[w : w+int(n)]); err != nil {
			return err
		}
		payload = payload[w+int(n):]
	}
	return nil
}

// AppendFrame appends a frame holding records to b. Each record must be at
// least 1 byte long.
func AppendFrame(b []byte, records ...[]byte) []byte {
	start := len(b)
	b = append(b, make([]byte, frameHeader)...)
	for _, r := range records {
		b = appendRecord(b, r)
	}
	sealFrame(b[start:])
	return b
}

func appendRecord(b, rec []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(rec)))
	return append(b, rec...)
}

// sealFrame fills in the header of a frame whose payload follows it.
func sealFrame(frame []byte) {
	binary.LittleEndian.PutUint32(frame[:4], uint32(len(frame)-frameHeader))
	binary.LittleEndian.PutUint32(frame[4:8], frameCRC(frame[:4], frame[frameHeader:]))
}

func frameCRC(length, payload []byte) uint32 {
	return crc32.Update(crc32.Checksum(length, castagnoli), castagnoli, payload)
}

// findFrame returns the offset of the first intact frame (with well-formed
// records) in b, or -1.
func findFrame(b []byte, opts *Options) int {
	for i := 0; i+frameHeader < len(b); i++ {
		if p, _, ok := DecodeFrame(b[i:], opts.maxFrame()); ok {
			if forEachRecord(p, opts.MaxRecord, func([]byte) error { return nil }) == nil {
				return i
			}
		}
	}
	return -1
}

// Append queues rec for the next batch and returns its ticket. It does not
// block on I/O; Wait for the ticket before acknowledging anything that
// depends on rec. Records are written in the order Append was called. rec
// is copied. Append fails with ErrClosed after Close, with the sticky error
// after a failed write, and for an empty record or one over MaxRecord.
func (l *Log) Append(rec []byte) (Ticket, error) {
	if len(rec) == 0 || len(rec) > l.opts.MaxRecord {
		return 0, fmt.Errorf("wal: a record of %d bytes; accepted: 1 to %d bytes", len(rec), l.opts.MaxRecord)
	}
	l.mu.Lock()
	if err := l.unusable(); err != nil {
		l.mu.Unlock()
		return 0, err
	}
	b := l.queue[len(l.queue)-1]
	if !b.empty() && len(b.buf)+binary.MaxVarintLen64+len(rec) > frameHeader+batchBytes {
		b = newBatch(b.seq + 1)
		l.queue = append(l.queue, b)
	}
	b.buf = appendRecord(b.buf, rec)
	l.stats.Records++
	t := Ticket(b.seq)
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
	return t, nil
}

func (l *Log) unusable() error {
	if l.err != nil {
		return l.err
	}
	if l.closed {
		return ErrClosed
	}
	return nil
}

// Wait blocks until the batch of t is durable, and returns nil then. It
// returns the log's sticky error if that batch could not be written, and an
// error wrapping ctx.Err() if ctx is done first (the record may still become
// durable).
func (l *Log) Wait(ctx context.Context, t Ticket) error {
	l.mu.Lock()
	if uint64(t) <= l.durable {
		l.mu.Unlock()
		return nil
	}
	if l.err != nil {
		err := l.err
		l.mu.Unlock()
		return err
	}
	var ch chan struct{}
	if l.flushing != nil && l.flushing.seq == uint64(t) {
		ch = l.flushing.done
	}
	for _, b := range l.queue {
		if b.seq == uint64(t) {
			ch = b.done
		}
	}
	l.mu.Unlock()
	if ch == nil {
		return fmt.Errorf("wal: wait for ticket %d, which this log never issued", t)
	}
	select {
	case <-ch:
	case <-ctx.Done():
		return fmt.Errorf("wal: wait for a record to become durable: %w", ctx.Err())
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if uint64(t) <= l.durable {
		return nil
	}
	return l.unusable()
}

// Sync appends nothing and waits until everything appended so far is
// durable.
func (l *Log) Sync(ctx context.Context) error {
	l.mu.Lock()
	b := l.queue[len(l.queue)-1]
	t := Ticket(b.seq)
	if b.empty() {
		t--
	}
	l.mu.Unlock()
	return l.Wait(ctx, t)
}

// Stats returns the log's counters.
func (l *Log) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stats
}

// Close writes what is queued, stops the writer goroutine and closes the
// file. Waiters for queued records are released (with nil once their
// record is durable). Close returns the sticky write error, if any. It is
// safe to call more than once.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		<-l.done
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	close(l.quit)
	<-l.done
	l.mu.Lock()
	err := l.err
	l.mu.Unlock()
	if cerr := l.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("wal: close %s: %w", l.path, cerr)
	}
	return err
}

// writer is the one goroutine that writes the file. It is started by Open
// and stopped by Close.
func (l *Log) writer() {
	defer close(l.done)
	for {
		select {
		case <-l.wake:
		case <-l.quit:
			// Append fails once closed is set: writing what is queued
			// writes everything.
			for l.flush() {
			}
			return
		}
		for l.flush() {
			if l.opts.Snapshot != nil && l.size >= l.opts.CompactAt && l.size >= 2*l.baseSize && l.healthy() {
				l.compact()
			}
		}
	}
}

func (l *Log) healthy() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err == nil
}

// flush writes and syncs the oldest queued batch. It reports whether it
// wrote one.
func (l *Log) flush() bool {
	l.mu.Lock()
	b := l.queue[0]
	if l.err != nil || b.empty() {
		l.mu.Unlock()
		return false
	}
	l.queue = l.queue[1:]
	if len(l.queue) == 0 {
		l.queue = append(l.queue, newBatch(b.seq+1))
	}
	l.flushing = b
	l.mu.Unlock()

	sealFrame(b.buf)
	_, err := l.f.Write(b.buf)
	if err == nil {
		err = l.f.Sync()
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	l.flushing = nil
	if err != nil {
		// After a failed write or fsync nothing about the file can be
		// trusted (the kernel may have dropped the dirty pages): fail this
		// batch, everything queued and everything after.
		l.err = fmt.Errorf("wal: write %s: %w; the log is unusable until reopened", l.path, err)
		close(b.done)
		for _, q := range l.queue {
			close(q.done)
		}
		l.queue = []*batch{newBatch(l.queue[len(l.queue)-1].seq + 1)}
		return false
	}
	l.size += int64(len(b.buf))
	l.durable = b.seq
	l.stats.Size = l.size
	l.stats.Syncs++
	close(b.done)
	return true
}

// compact rewrites the log from a snapshot. It runs on the writer
// goroutine between batches: everything durable so far is reflected in the
// snapshot, and whatever is appended meanwhile is written to the new file
// after it.
func (l *Log) compact() {
	f, renamed, err := l.createFile(l.path, func(add func([]byte)) error {
		return l.opts.Snapshot(add)
	})
	if err != nil {
		if renamed {
			l.mu.Lock()
			l.err = err
			l.mu.Unlock()
			return
		}
		l.log.Warn("rewriting the log failed; it keeps growing", "path", l.path, "err", err)
		l.baseSize = l.size // try again only after it has doubled once more
		return
	}
	size, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		f.Close()
		l.mu.Lock()
		l.err = fmt.Errorf("wal: after rewriting %s: %w", l.path, err)
		l.mu.Unlock()
		return
	}
	l.f.Close()
	l.f = f
	l.size, l.baseSize = size, size
	l.mu.Lock()
	l.stats.Size = l.size
	l.stats.Compactions++
	l.mu.Unlock()
}
