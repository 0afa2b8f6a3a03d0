package netproxy

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// conn is one client connection and, once dialled, its connection to the
// target. Four goroutines forward it: a reader and a writer per direction.
// The last of them to return closes both sockets and removes the conn from
// its proxy.
type conn struct {
	p      *Proxy
	client *net.TCPConn
	done   chan struct{} // closed by abort
	live   atomic.Int32  // forwarding goroutines still running

	mu      sync.Mutex
	server  *net.TCPConn // nil until dialled
	pipes   [2]*pipe     // set with server
	aborted bool
}

// run dials the target and starts forwarding.
func (c *conn) run() {
	s, err := c.p.dialer.DialContext(c.p.dialCtx, "tcp", c.p.target)
	c.mu.Lock()
	if err != nil || c.aborted {
		c.mu.Unlock()
		if err == nil {
			rst(s.(*net.TCPConn))
		} else {
			c.p.log.Info("dial target failed; resetting the client", "err", err)
		}
		c.abort()
		c.p.remove(c)
		return
	}
	c.server = s.(*net.TCPConn)
	c.pipes = [2]*pipe{c.newPipe(Up, c.client, c.server), c.newPipe(Down, c.server, c.client)}
	c.mu.Unlock()
	c.live.Store(4)
	for _, pp := range c.pipes {
		c.p.wg.Go(pp.readLoop)
		c.p.wg.Go(pp.writeLoop)
	}
}

// abort resets both sides of the connection and tells its goroutines to
// stop. It is safe to call more than once and from any goroutine.
func (c *conn) abort() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.aborted {
		return
	}
	c.aborted = true
	c.p.resets.Add(1)
	close(c.done)
	rst(c.client)
	if c.server != nil {
		rst(c.server)
	}
}

// finish is called by each forwarding goroutine as it returns.
func (c *conn) finish() {
	if c.live.Add(-1) > 0 {
		return
	}
	// Both directions are done: closed gracefully (FINs already passed
	// through) or aborted. Closing again after an RST is harmless.
	_ = c.client.Close()
	_ = c.server.Close()
	// An aborted connection can leave bytes queued; they are gone now.
	for _, pp := range c.pipes {
		pp.mu.Lock()
		n := pp.queued
		clear(pp.queue)
		pp.queue, pp.queued = nil, 0
		pp.mu.Unlock()
		pp.stats.buffered.Add(-int64(n))
	}
	c.p.remove(c)
}

func (c *conn) newPipe(d Dir, src, dst *net.TCPConn) *pipe {
	return &pipe{
		c:     c,
		dir:   d,
		src:   src,
		dst:   dst,
		stats: &c.p.stats[dirIndex(d)],
		wake:  make(chan struct{}, 1),
		space: make(chan struct{}, 1),
	}
}

type chunk struct {
	b  []byte
	at time.Time // not to be written before
}

// pipe is one direction of a conn: its reader fills the queue, its writer
// drains it according to the current Rule of that direction. While the
// queue is empty and the direction passes, the reader writes itself.
type pipe struct {
	c        *conn
	dir      Dir
	src, dst *net.TCPConn
	stats    *dirStats
	wake     chan struct{} // cap 1: the queue or eof changed
	space    chan struct{} // cap 1: the queue shrank

	mu      sync.Mutex
	queue   []chunk
	queued  int       // bytes in queue
	lastAt  time.Time // at of the last chunk queued, to keep order
	eof     bool      // src sent FIN; pass it on after the queue
	damaged bool      // bytes were lost: reset when the blackhole ends
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (pp *pipe) readLoop() {
	defer pp.c.finish()
	buf := make([]byte, readSize)
	for {
		n, err := pp.src.Read(buf)
		if n > 0 {
			if !pp.push(append([]byte(nil), buf[:n]...), time.Now()) {
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				pp.mu.Lock()
				pp.eof = true
				pp.mu.Unlock()
				signal(pp.wake)
				return
			}
			// The sender reset the connection, or we aborted it: pass the
			// reset on (abort is idempotent).
			pp.c.abort()
			return
		}
	}
}

// push queues b, read at now, or drops it under ModeBlackhole. It waits
// while the queue is full, and returns false if the conn was aborted.
func (pp *pipe) push(b []byte, now time.Time) bool {
	for {
		st := pp.c.p.state.Load()
		r := st.fault.rule(pp.dir)
		if r.Mode == ModeBlackhole {
			pp.mu.Lock()
			pp.damaged = true
			pp.mu.Unlock()
			pp.stats.dropped.Add(int64(len(b)))
			return true
		}
		at := now
		if r.Mode == ModeDelay {
			at = now.Add(r.Delay + pp.c.p.jitter(r.Jitter))
		}
		pp.mu.Lock()
		if r.Mode == ModePass && len(pp.queue) == 0 {
			// Fast path: nothing is queued, so the writer is idle (it pops
			// a chunk only after writing it) and nothing can be written
			// before b. Writing here saves a goroutine hand-off per chunk.
			pp.mu.Unlock()
			if _, err := pp.dst.Write(b); err != nil {
				pp.c.abort()
				return false
			}
			pp.stats.forwarded.Add(int64(len(b)))
			return true
		}
		if pp.queued > 0 && pp.queued+len(b) > pp.c.p.maxBuffered {
			pp.mu.Unlock()
			select {
			case <-pp.space:
			case <-st.changed:
			case <-pp.c.done:
				return false
			}
			continue
		}
		if at.Before(pp.lastAt) {
			at = pp.lastAt
		}
		pp.lastAt = at
		pp.queue = append(pp.queue, chunk{b: b, at: at})
		pp.queued += len(b)
		pp.mu.Unlock()
		pp.stats.buffered.Add(int64(len(b)))
		signal(pp.wake)
		return true
	}
}

type action uint8

const (
	actWait  action = iota // nothing to do until the queue or the fault changes
	actSleep               // the head chunk is due later
	actWrite               // write the head chunk now
	actClose               // queue drained after EOF: pass the FIN on
	actAbort               // the stream lost bytes and the blackhole ended
)

func (pp *pipe) writeLoop() {
	defer pp.c.finish()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		st := pp.c.p.state.Load()
		act, b, wait := pp.next(st.fault.rule(pp.dir))
		switch act {
		case actAbort:
			pp.c.abort()
			return
		case actWait:
			select {
			case <-pp.wake:
			case <-st.changed:
			case <-pp.c.done:
				return
			}
		case actSleep:
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-st.changed:
			case <-pp.c.done:
				timer.Stop()
				return
			}
			timer.Stop()
		case actWrite:
			if _, err := pp.dst.Write(b); err != nil {
				pp.c.abort()
				return
			}
			pp.pop(len(b))
		case actClose:
			if err := pp.dst.CloseWrite(); err != nil {
				pp.c.abort()
			}
			return
		}
	}
}

// next decides what the writer does under rule r.
func (pp *pipe) next(r Rule) (act action, b []byte, wait time.Duration) {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	if pp.damaged && r.Mode != ModeBlackhole {
		return actAbort, nil, 0
	}
	switch r.Mode {
	case ModeBlackhole:
		if n := pp.queued; n > 0 {
			// In flight when the partition began: lost with it.
			clear(pp.queue)
			pp.queue, pp.queued, pp.damaged = pp.queue[:0], 0, true
			pp.stats.buffered.Add(-int64(n))
			pp.stats.dropped.Add(int64(n))
			signal(pp.space)
		}
		return actWait, nil, 0
	case ModeHold:
		return actWait, nil, 0
	}
	if len(pp.queue) == 0 {
		if pp.eof {
			return actClose, nil, 0
		}
		return actWait, nil, 0
	}
	if d := time.Until(pp.queue[0].at); d > 0 {
		return actSleep, nil, d
	}
	return actWrite, pp.queue[0].b, 0
}

// pop removes the head chunk, of n bytes, after it was written.
func (pp *pipe) pop(n int) {
	pp.mu.Lock()
	pp.queue[0] = chunk{}
	pp.queue = pp.queue[1:]
	pp.queued -= n
	pp.mu.Unlock()
	pp.stats.buffered.Add(-int64(n))
	pp.stats.forwarded.Add(int64(n))
	signal(pp.space)
}
