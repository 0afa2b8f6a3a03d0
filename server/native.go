package server

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/internal/lockstate"
	"github.com/fencerlock/fencer/internal/wire"
)

// sniffTimeout bounds how long a new connection may take to say which
// protocol it speaks.
const sniffTimeout = 10 * time.Second

// mux splits one listener between the native protocol (connections that
// open with wire.Magic) and HTTP (everything else), so the client API has
// one port.
type mux struct {
	ln    net.Listener
	https chan net.Conn // connections for the HTTP server
	done  chan struct{}
	once  sync.Once
}

func newMux(ln net.Listener) *mux {
	return &mux{ln: ln, https: make(chan net.Conn), done: make(chan struct{})}
}

// serve accepts connections until the listener closes; native ones go to
// native, in their own goroutines tracked by wg.
func (m *mux) serve(wg *sync.WaitGroup, native func(net.Conn, *bufio.Reader)) {
	defer m.Close()
	for {
		c, err := m.ln.Accept()
		if err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.SetReadDeadline(time.Now().Add(sniffTimeout))
			r := bufio.NewReaderSize(c, 16<<10)
			head, err := r.Peek(4)
			if err != nil {
				c.Close()
				return
			}
			c.SetReadDeadline(time.Time{})
			if string(head) == wire.Magic[:4] {
				if _, err := r.Discard(len(wire.Magic)); err != nil {
					c.Close()
					return
				}
				native(c, r)
				return
			}
			select {
			case m.https <- &peekedConn{Conn: c, r: r}:
			case <-m.done:
				c.Close()
			}
		}()
	}
}

// Accept returns the next HTTP connection; mux is the HTTP server's
// listener.
func (m *mux) Accept() (net.Conn, error) {
	select {
	case c := <-m.https:
		return c, nil
	case <-m.done:
		return nil, net.ErrClosed
	}
}

func (m *mux) Close() error {
	m.once.Do(func() {
		close(m.done)
		m.ln.Close()
	})
	return nil
}

func (m *mux) Addr() net.Addr { return m.ln.Addr() }

// peekedConn replays the bytes read while sniffing.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// serveNative serves one native connection: a goroutine per call, and one
// writer that sends whatever responses have queued up in one write.
func (s *Server) serveNative(c net.Conn, r *bufio.Reader) {
	if !s.trackConn(c, true) {
		c.Close()
		return
	}
	defer s.trackConn(c, false)
	ctx, cancel := context.WithCancel(context.Background())
	w := &nativeWriter{c: c, wake: make(chan struct{}, 1)}
	var calls sync.WaitGroup
	go w.loop()
	defer func() {
		cancel()
		c.Close()
		calls.Wait()
		w.stop()
	}()
	var buf []byte
	for {
		p, err := wire.ReadFrame(r, buf)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.log.Debug("native connection closed", "remote", c.RemoteAddr(), "err", err)
			}
			return
		}
		buf = p
		req, err := wire.DecodeRequest(p)
		if err != nil {
			// A malformed frame may have lost the framing: answer what can
			// be answered and close.
			w.send(&wire.Response{Kind: req.Kind, ID: req.ID, Code: wire.CodeInvalidArgument, Message: err.Error()})
			return
		}
		if req.Kind == wire.KindPing {
			w.send(&wire.Response{Kind: wire.KindPing, ID: req.ID})
			continue
		}
		calls.Add(1)
		go func() {
			defer calls.Done()
			w.send(s.nativeCall(ctx, &req))
		}()
	}
}

func (s *Server) nativeCall(ctx context.Context, req *wire.Request) *wire.Response {
	resp := &wire.Response{Kind: req.Kind, ID: req.ID}
	var err error
	switch req.Kind {
	case wire.KindAcquire:
		var a acquireArgs
		if a, err = validateAcquire(req.Session, req.Name, req.TTLMillis, req.DelayMillis, req.Wait); err == nil {
			var res acquireResult
			res, err = s.acquire(ctx, a)
			resp.Granted, resp.Token = res.granted, res.token
		}
	case wire.KindRelease:
		resp.Released, err = s.release(ctx, req.Session, req.Token)
	case wire.KindKeepAlive:
		resp.Expired, err = s.keepAlive(ctx, req.Sessions)
	}
	if err != nil {
		st := statusOf(err)
		resp.Code, resp.Message, resp.Leader = st.code, err.Error(), st.leader
	}
	return resp
}

// nativeWriter sends a connection's responses, batching those that queue
// up while a write is in progress.
type nativeWriter struct {
	c    net.Conn
	mu   sync.Mutex
	out  []byte
	dead bool
	wake chan struct{}
}

func (w *nativeWriter) send(r *wire.Response) {
	w.mu.Lock()
	if !w.dead {
		w.out = wire.AppendResponse(w.out, r)
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *nativeWriter) loop() {
	var buf []byte
	for range w.wake {
		w.mu.Lock()
		buf, w.out = w.out, buf[:0]
		dead := w.dead
		w.mu.Unlock()
		if len(buf) > 0 {
			if _, err := w.c.Write(buf); err != nil {
				w.mu.Lock()
				w.dead = true
				w.mu.Unlock()
			}
		}
		if dead {
			return
		}
	}
}

// stop flushes what is queued and ends the loop.
func (w *nativeWriter) stop() {
	w.mu.Lock()
	w.dead = true
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default: // a wake-up is pending; the loop will see dead
	}
}

// errStatus is how a service error is reported, in either protocol.
type errStatus struct {
	code   wire.Code
	leader string
}

// statusOf classifies a service error.
func statusOf(err error) errStatus {
	var (
		nl  *notLeaderError
		ab  *abortedError
		st  *stateError
		inv *fencer.InvalidError
	)
	switch {
	case errors.As(err, &nl):
		if nl.leaderAddr == "" {
			return errStatus{code: wire.CodeUnavailable}
		}
		return errStatus{code: wire.CodeFailedPrecondition, leader: nl.leaderAddr}
	case errors.Is(err, errNoLeader), errors.Is(err, errNotReady):
		return errStatus{code: wire.CodeUnavailable}
	case errors.As(err, &ab):
		return errStatus{code: wire.CodeAborted}
	case errors.As(err, &inv):
		return errStatus{code: wire.CodeInvalidArgument}
	case errors.As(err, &st):
		switch st.res.Code {
		case lockstate.CodeInvalidArgument, lockstate.CodeMalformed:
			return errStatus{code: wire.CodeInvalidArgument}
		case lockstate.CodeUnknownSession:
			return errStatus{code: wire.CodeNotFound}
		}
		return errStatus{code: wire.CodeFailedPrecondition}
	case errors.Is(err, context.Canceled):
		return errStatus{code: wire.CodeCanceled}
	case errors.Is(err, context.DeadlineExceeded):
		return errStatus{code: wire.CodeDeadlineExceeded}
	}
	return errStatus{code: wire.CodeInternal}
}

// trackConn records an open native connection, so that Close can end it.
// It reports false when the server is closing.
func (s *Server) trackConn(c net.Conn, open bool) bool {
	s.connsMu.Lock()
	defer s.connsMu.Unlock()
	if !open {
		delete(s.conns, c)
		return true
	}
	if s.conns == nil {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

// closeConns ends every native connection and refuses new ones.
func (s *Server) closeConns() {
	s.connsMu.Lock()
	defer s.connsMu.Unlock()
	for c := range s.conns {
		c.Close()
	}
	s.conns = nil
}
