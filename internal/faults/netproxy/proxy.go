package netproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// ErrClosed is returned by a Proxy's or Partition's methods after Close.
var ErrClosed = errors.New("netproxy: closed")

const (
	defaultMaxBuffered = 4 << 20
	defaultDialTimeout = 5 * time.Second
	readSize           = 32 << 10
)

// Options configure a Proxy. The zero value (or nil) gives the defaults.
type Options struct {
	// ListenAddr is the loopback address to listen on; empty means
	// "127.0.0.1:0", a free port. Only loopback addresses are accepted.
	ListenAddr string
	// MaxBuffered is how many bytes one direction of one connection may
	// hold (delayed or held) before the proxy stops reading from the
	// sender; zero means 4 MiB.
	MaxBuffered int
	// DialTimeout bounds the connection to the target; zero means 5 s. A
	// client whose connection to the target fails is reset.
	DialTimeout time.Duration
	// Seed seeds the jitter of ModeDelay, so a run can be repeated.
	Seed uint64
	// Logger receives one line per connection failure that is not an
	// injected fault; nil discards them.
	Logger *slog.Logger
}

// state is one Fault as seen by the forwarding goroutines. changed is closed
// when a newer state replaces it, to wake goroutines waiting on the old one.
type state struct {
	fault   Fault
	changed chan struct{}
}

// dirStats are the counters of one direction.
type dirStats struct {
	forwarded, dropped, buffered atomic.Int64
}

// Proxy forwards the TCP connections it accepts to one target, applying its
// current Fault. It is safe for concurrent use. Close it to stop its
// goroutines; the Fault can be changed at any time before.
type Proxy struct {
	target      string
	ln          net.Listener
	maxBuffered int
	dialer      net.Dialer
	log         *slog.Logger
	dialCtx     context.Context // cancelled by Close, to stop dials
	cancelDials context.CancelFunc

	state atomic.Pointer[state]
	stats [2]dirStats // indexed by dirIndex
	wg    sync.WaitGroup

	rngMu sync.Mutex
	rng   *rand.Rand

	mu       sync.Mutex
	closed   bool
	conns    map[*conn]struct{} // being dialled or forwarded
	parked   []*net.TCPConn     // accepted under ConnsDrop
	accepted int64
	resets   atomic.Int64
}

// New starts a proxy that listens on a loopback port and forwards to target
// ("host:port"). The target need not be up: each accepted connection dials
// it anew, so the target can restart behind the proxy. opts may be nil.
func New(target string, opts *Options) (*Proxy, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.ListenAddr == "" {
		o.ListenAddr = "127.0.0.1:0"
	}
	if o.MaxBuffered < 0 || o.DialTimeout < 0 {
		return nil, fmt.Errorf("netproxy: MaxBuffered %d and DialTimeout %v must not be negative (zero means the default)", o.MaxBuffered, o.DialTimeout)
	}
	if o.MaxBuffered == 0 {
		o.MaxBuffered = defaultMaxBuffered
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = defaultDialTimeout
	}
	if _, _, err := net.SplitHostPort(target); err != nil {
		return nil, fmt.Errorf("netproxy: target %q is not host:port: %w", target, err)
	}
	host, _, err := net.SplitHostPort(o.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("netproxy: ListenAddr %q is not host:port: %w", o.ListenAddr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("netproxy: ListenAddr %q is not a loopback address; the proxy only listens on loopback, e.g. 127.0.0.1:0", o.ListenAddr)
	}
	ln, err := net.Listen("tcp", o.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("netproxy: %w", err)
	}
	if ln.Addr().String() == target {
		ln.Close()
		return nil, fmt.Errorf("netproxy: the proxy would listen on its own target %s; use another ListenAddr", target)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		target:      target,
		ln:          ln,
		maxBuffered: o.MaxBuffered,
		dialer:      net.Dialer{Timeout: o.DialTimeout},
		log:         o.Logger.With("proxy", ln.Addr().String(), "target", target),
		dialCtx:     ctx,
		cancelDials: cancel,
		rng:         rand.New(rand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15)),
		conns:       make(map[*conn]struct{}),
	}
	p.state.Store(&state{changed: make(chan struct{})})
	p.wg.Go(p.acceptLoop)
	return p, nil
}

// Addr returns the address the proxy listens on: what the client must dial
// instead of the target.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target returns the address the proxy forwards to.
func (p *Proxy) Target() string { return p.target }

// Fault returns the current fault.
func (p *Proxy) Fault() Fault { return p.state.Load().fault }

// Set replaces the proxy's fault. It applies to open connections at once:
// bytes already held are released (or lost) according to f, waiting
// goroutines re-check, and ConnsReset resets every open connection before
// Set returns. It returns an error for an invalid f (see [Fault.Validate])
// and ErrClosed after Close.
func (p *Proxy) Set(f Fault) error {
	if err := f.Validate(); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	old := p.state.Load()
	p.state.Store(&state{fault: f, changed: make(chan struct{})})
	close(old.changed)
	switch f.Conns {
	case ConnsReset:
		p.resetLocked()
	case ConnsAccept:
		for _, c := range p.parked {
			p.startLocked(c)
		}
		p.parked = nil
	}
	return nil
}

// Heal is Set(Fault{}): a healthy link.
func (p *Proxy) Heal() error { return p.Set(Fault{}) }

// ResetConns resets every open and parked connection now (RST to both
// sides), whatever the fault; new connections are treated by the fault as
// usual.
func (p *Proxy) ResetConns() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	p.resetLocked()
	return nil
}

func (p *Proxy) resetLocked() {
	for c := range p.conns {
		c.abort()
	}
	for _, c := range p.parked {
		rst(c)
	}
	p.resets.Add(int64(len(p.parked)))
	p.parked = nil
}

// DirStats counts the bytes of one direction over the proxy's life, except
// Buffered, which is a current value.
type DirStats struct {
	Forwarded int64 // written to the receiver
	Dropped   int64 // lost to ModeBlackhole
	Buffered  int64 // read and not yet written: delayed or held, now
}

// Stats is a snapshot of a proxy's counters.
type Stats struct {
	Accepted int64 // connections accepted so far
	// Reset counts the connections that ended with an RST rather than a
	// clean close: by an injected fault, because the target could not be
	// dialled, because one side reset its end, or by Close.
	Reset    int64
	Open     int // connections being dialled or forwarded now
	Parked   int // connections parked by ConnsDrop now
	Up, Down DirStats
}

// Stats returns the proxy's counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	s := Stats{Accepted: p.accepted, Reset: p.resets.Load(), Open: len(p.conns), Parked: len(p.parked)}
	p.mu.Unlock()
	for i, d := range []*DirStats{&s.Up, &s.Down} {
		d.Forwarded = p.stats[i].forwarded.Load()
		d.Dropped = p.stats[i].dropped.Load()
		d.Buffered = p.stats[i].buffered.Load()
	}
	return s
}

// Close stops accepting, resets every connection, and waits for all the
// proxy's goroutines to return. It returns the listener's close error the
// first time and nil after.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.cancelDials()
	err := p.ln.Close()
	p.resetLocked()
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

func (p *Proxy) acceptLoop() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off, but stay
			// stoppable.
			p.log.Warn("accept failed", "err", err)
			select {
			case <-p.dialCtx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		p.admit(c.(*net.TCPConn))
	}
}

func (p *Proxy) admit(c *net.TCPConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.accepted++
	if p.closed {
		p.resets.Add(1)
		rst(c)
		return
	}
	switch p.state.Load().fault.Conns {
	case ConnsReset:
		p.resets.Add(1)
		rst(c)
	case ConnsDrop:
		p.parked = append(p.parked, c)
	default:
		p.startLocked(c)
	}
}

// startLocked starts forwarding client. p.mu is held and p is not closed,
// so the WaitGroup cannot be waited on yet.
func (p *Proxy) startLocked(client *net.TCPConn) {
	c := &conn{p: p, client: client, done: make(chan struct{})}
	p.conns[c] = struct{}{}
	p.wg.Go(c.run)
}

func (p *Proxy) remove(c *conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// jitter returns a random duration in [0, max).
func (p *Proxy) jitter(max time.Duration) time.Duration {
	if max <= 0 {
		return 0
	}
	p.rngMu.Lock()
	defer p.rngMu.Unlock()
	return time.Duration(p.rng.Int64N(int64(max)))
}

// rst closes c with an RST instead of a FIN.
func rst(c *net.TCPConn) {
	_ = c.SetLinger(0)
	_ = c.Close()
}

func dirIndex(d Dir) int {
	if d == Up {
		return 0
	}
	return 1
}
