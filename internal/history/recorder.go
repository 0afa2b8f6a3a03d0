package history

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultFlushInterval is how long a Recorder keeps an event in memory at
// most when [Options.FlushInterval] is zero: the most a killed process loses.
const DefaultFlushInterval = 2 * time.Millisecond

// defaultBufferSize is when a Recorder writes at once, without waiting.
const defaultBufferSize = 64 << 10

// ErrClosed is returned by a Recorder's methods after Close.
var ErrClosed = errors.New("history: recorder is closed")

// Options configure a Recorder. The zero value (or nil) gives the defaults.
type Options struct {
	// Process fills Event.Process when an event leaves it empty.
	Process string
	// FlushInterval bounds how long an event stays in memory before it is
	// written to the file; zero means DefaultFlushInterval. Shorter loses
	// less on SIGKILL and costs more write calls, at most one per interval.
	FlushInterval time.Duration
	// BufferSize is how many bytes of lines make the Recorder write at once
	// rather than at the end of the interval; zero means 64 KiB.
	BufferSize int
}

// Recorder appends events to one history file as JSON lines. It is safe for
// concurrent use. It owns one goroutine, which writes the buffer out at
// the end of each flush interval; Close writes what is left, stops that
// goroutine, waits for it and closes the file. Every Recorder must be
// closed.
//
// A write error is kept: the Recorder stops writing, and Record, Flush and
// Close return it from then on.
type Recorder struct {
	path     string
	process  string
	interval time.Duration
	limit    int

	mu     sync.Mutex
	f      *os.File
	buf    []byte
	err    error // sticky write error
	closed bool

	ops  atomic.Uint64
	kick chan struct{} // cap 1: the buffer became non-empty
	stop chan struct{} // closed by Close
	done chan struct{} // closed when the flusher has returned
}

// Create creates the history file at path and returns a Recorder writing
// to it. The file must not exist yet: each process writes a file of its
// own (a restarted process, a new one), so two writers never interleave
// lines. opts may be nil.
func Create(path string, opts *Options) (*Recorder, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.FlushInterval < 0 {
		return nil, fmt.Errorf("history: FlushInterval is %v; it must be positive, or zero for %v", o.FlushInterval, DefaultFlushInterval)
	}
	if o.BufferSize < 0 {
		return nil, fmt.Errorf("history: BufferSize is %d; it must be positive, or zero for %d", o.BufferSize, defaultBufferSize)
	}
	if o.FlushInterval == 0 {
		o.FlushInterval = DefaultFlushInterval
	}
	if o.BufferSize == 0 {
		o.BufferSize = defaultBufferSize
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o644)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("history: %s exists; give every process (and every restart of one) a file of its own: %w", path, err)
		}
		return nil, fmt.Errorf("history: create %s: %w", path, err)
	}
	r := &Recorder{
		path:     path,
		process:  o.Process,
		interval: o.FlushInterval,
		limit:    o.BufferSize,
		f:        f,
		buf:      make([]byte, 0, o.BufferSize+1024),
		kick:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	go r.flusher()
	return r, nil
}

// Path returns the file's path.
func (r *Recorder) Path() string { return r.path }

// NextOp returns a new operation number for Event.Op, unique within this
// Recorder and never zero. Processes that share a Process name must not
// share operation numbers from different Recorders.
func (r *Recorder) NextOp() uint64 { return r.ops.Add(1) }

// Record appends e to the history. It fills e.Time with [Now] when it is
// zero, and e.Process from [Options.Process] when it is empty. It returns
// an error for an event without a Kind or a Process, after Close
// ([ErrClosed]), and after a failed write. It does not block on the disk
// unless the buffer is full.
func (r *Recorder) Record(e Event) error {
	if e.Process == "" {
		e.Process = r.process
	}
	if e.Kind == "" || e.Process == "" {
		return fmt.Errorf("history: event %+v has no kind or no process; both are required (set Options.Process for a default process)", e)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	if r.err != nil {
		return r.err
	}
	// Stamp under the lock, so the lines of one file stamped here are in
	// time order.
	if e.Time == 0 {
		e.Time = Now()
	}
	line, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("history: encode %+v: %w", e, err)
	}
	wasEmpty := len(r.buf) == 0
	r.buf = append(r.buf, line...)
	r.buf = append(r.buf, '\n')
	if len(r.buf) >= r.limit {
		return r.writeLocked()
	}
	if wasEmpty {
		select {
		case r.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

// Flush writes the buffered events to the file now.
func (r *Recorder) Flush() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	return r.writeLocked()
}

// Close writes the buffered events, stops the flushing goroutine and closes
// the file. It returns the first write or close error. Calling Close again
// returns ErrClosed.
func (r *Recorder) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	r.closed = true
	close(r.stop)
	err := r.writeLocked()
	r.mu.Unlock()
	<-r.done
	if cerr := r.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("history: close %s: %w", r.path, cerr)
	}
	return err
}

// writeLocked writes the whole buffer with one write call, so the file only
// ever gets whole lines unless the process dies inside that call.
func (r *Recorder) writeLocked() error {
	if r.err != nil {
		return r.err
	}
	if len(r.buf) == 0 {
		return nil
	}
	if _, err := r.f.Write(r.buf); err != nil {
		r.err = fmt.Errorf("history: write %s: %w", r.path, err)
		return r.err
	}
	r.buf = r.buf[:0]
	return nil
}

// flusher writes the buffer out one interval after it became non-empty.
func (r *Recorder) flusher() {
	defer close(r.done)
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		select {
		case <-r.kick:
		case <-r.stop:
			return
		}
		t.Reset(r.interval)
		select {
		case <-t.C:
		case <-r.stop:
			t.Stop()
			return // Close writes the rest
		}
		r.mu.Lock()
		if !r.closed {
			_ = r.writeLocked() // kept in r.err for the next caller
		}
		r.mu.Unlock()
	}
}
