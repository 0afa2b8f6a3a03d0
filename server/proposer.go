package server

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/fencerlock/fencer/internal/lockstate"
)

// batchEntry is byte 0 of a log entry that carries several commands. It is
// above every lockstate command type, so the two kinds of entry cannot be
// confused. Layout: batchEntry, uvarint count, then per command a uvarint
// length and its lockstate encoding.
const batchEntry = 0xFB

// maxInFlight is how many entries the proposer has handed to Raft and not
// yet seen applied. Raft accepts entries at once and commits them in
// groups of its own, so without a bound nearly every request became an
// entry of its own (1.5 commands per entry with 64 clients), and Raft's
// per-entry costs (encoding, storing, replicating, applying) ruled. With
// two in flight, one entry is stored and replicated while the next gathers
// every request that arrives meanwhile. Measured with
// BenchmarkAcquireRelease (64 clients; -benchtime 30000x): 3 nodes went
// from about 3.1k to 5.2–6.9k pairs/s, one node from 7.6–8.7k to
// 9.9–10.2k; one in flight, or three or four, did worse than two.
const maxInFlight = 2

// maxBatch bounds the commands of one entry, and so its size and the time
// the state machine spends on it.
const maxBatch = 512

// encodeBatch frames several encoded commands as one entry.
func encodeBatch(cmds [][]byte) []byte {
	if len(cmds) == 1 {
		return cmds[0]
	}
	n := 1 + binary.MaxVarintLen64
	for _, c := range cmds {
		n += binary.MaxVarintLen64 + len(c)
	}
	b := make([]byte, 0, n)
	b = append(b, batchEntry)
	b = binary.AppendUvarint(b, uint64(len(cmds)))
	for _, c := range cmds {
		b = binary.AppendUvarint(b, uint64(len(c)))
		b = append(b, c...)
	}
	return b
}

// splitBatch returns the commands of an entry: the entry itself unless it
// is a batch. A malformed batch yields an error, and the state machine then
// applies nothing from it.
func splitBatch(entry []byte) ([][]byte, error) {
	if len(entry) == 0 || entry[0] != batchEntry {
		return [][]byte{entry}, nil
	}
	rest := entry[1:]
	count, n := binary.Uvarint(rest)
	if n <= 0 || count == 0 || count > maxBatch {
		return nil, fmt.Errorf("batch entry: bad command count")
	}
	rest = rest[n:]
	out := make([][]byte, 0, count)
	for range count {
		l, n := binary.Uvarint(rest)
		if n <= 0 || l > uint64(len(rest)-n) {
			return nil, fmt.Errorf("batch entry: command %d truncated", len(out))
		}
		out = append(out, rest[n:n+int(l)])
		rest = rest[n+int(l):]
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("batch entry: %d bytes after the last command", len(rest))
	}
	return out, nil
}

// proposer shares log entries among concurrent requests: every command
// queued while the previous entry was being handed to Raft goes into the
// next one. Raft's own group commit then shares each append and fsync among
// the entries in flight. A request's commands always go into one entry, in
// order, so they apply atomically and back to back.
type proposer struct {
	r    *raft.Raft
	down <-chan struct{} // closed once Raft has shut down

	mu     sync.Mutex
	queue  []*proposal
	closed bool
	kick   chan struct{}
	stop   chan struct{} // closed by close

	inflight chan batch
	slots    chan struct{} // one per entry in flight; see maxInFlight
	done     chan struct{}
}

// proposal is one request's commands and, once applied, their results.
type proposal struct {
	cmds    [][]byte
	ready   chan struct{} // closed when results, index or err are set
	results []lockstate.Result
	index   uint64
	err     error
}

type batch struct {
	f     raft.ApplyFuture
	props []*proposal
}

var errProposerClosed = errors.New("server shutting down")

func newProposer(r *raft.Raft, down <-chan struct{}) *proposer {
	p := &proposer{r: r, down: down, kick: make(chan struct{}, 1), stop: make(chan struct{}), inflight: make(chan batch, maxInFlight), slots: make(chan struct{}, maxInFlight), done: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.loop() }()
	go func() { defer wg.Done(); p.complete() }()
	go func() { wg.Wait(); close(p.done) }()
	return p
}

// propose queues commands to be applied back to back in one entry.
func (p *proposer) propose(cmds ...lockstate.Command) *proposal {
	pr := &proposal{cmds: make([][]byte, len(cmds)), ready: make(chan struct{})}
	for i, c := range cmds {
		pr.cmds[i] = lockstate.Encode(c)
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		pr.err = errProposerClosed
		close(pr.ready)
		return pr
	}
	p.queue = append(p.queue, pr)
	p.mu.Unlock()
	select {
	case p.kick <- struct{}{}:
	default:
	}
	return pr
}

// wait returns the results of the proposal's commands.
func (pr *proposal) wait() ([]lockstate.Result, error) {
	<-pr.ready
	return pr.results, pr.err
}

// take removes up to maxBatch commands' worth of proposals from the queue.
func (p *proposer) take() []*proposal {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	i := 0
	for ; i < len(p.queue); i++ {
		if n > 0 && n+len(p.queue[i].cmds) > maxBatch {
			break
		}
		n += len(p.queue[i].cmds)
	}
	props := p.queue[:i:i]
	p.queue = p.queue[i:]
	if len(p.queue) > 0 {
		select {
		case p.kick <- struct{}{}:
		default:
		}
	}
	return props
}

func (p *proposer) loop() {
	defer close(p.inflight)
	for {
		select {
		case <-p.kick:
		case <-p.stop:
			// closed is set: nothing joins the queue any more.
			p.mu.Lock()
			q := p.queue
			p.queue = nil
			p.mu.Unlock()
			for _, pr := range q {
				pr.err = errProposerClosed
				close(pr.ready)
			}
			return
		}
		// Wait for a slot before taking from the queue, so that the entry
		// gathers everything that arrived while the others were in
		// flight. complete frees the slot once the entry has its outcome.
		p.slots <- struct{}{}
		props := p.take()
		if len(props) == 0 {
			<-p.slots
			continue
		}
		var cmds [][]byte
		for _, pr := range props {
			cmds = append(cmds, pr.cmds...)
		}
		p.inflight <- batch{f: p.r.Apply(encodeBatch(cmds), applyTimeout), props: props}
	}
}

// complete hands each entry's results to its proposals, in log order.
func (p *proposer) complete() {
	for b := range p.inflight {
		err := await(b.f, p.down)
		<-p.slots
		var results []lockstate.Result
		if err == nil {
			switch r := b.f.Response().(type) {
			case lockstate.Result:
				results = []lockstate.Result{r}
			case []lockstate.Result:
				results = r
			case error:
				err = r
			default:
				err = fmt.Errorf("unexpected apply response %T", r)
			}
		}
		off := 0
		for _, pr := range b.props {
			if err == nil && off+len(pr.cmds) <= len(results) {
				pr.results = results[off : off+len(pr.cmds)]
				pr.index = b.f.Index()
			} else if err == nil {
				pr.err = fmt.Errorf("entry %d applied %d results for %d commands", b.f.Index(), len(results), off+len(pr.cmds))
			} else {
				pr.err = err
			}
			off += len(pr.cmds)
			close(pr.ready)
		}
	}
}

// close stops taking proposals, fails those still queued, and waits until
// every entry in flight has its outcome. Call it after Raft's shutdown,
// after which await settles every future.
func (p *proposer) close() {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.stop)
	}
	p.mu.Unlock()
	<-p.done
}

// await returns f's error, or raft.ErrRaftShutdown once Raft has shut down
// with f still unanswered. hashicorp/raft does not answer a future that is
// still queued in one of its channels when it shuts down (a request its
// main loop never read, a committed entry its FSM goroutine never applied:
// hashicorp/raft#498); waiting on f.Error() alone would then wait forever,
// and Close with it. The goroutine left waiting on such a future is the
// price; it exists only after shutdown.
func await(f raft.Future, down <-chan struct{}) error {
	ch := make(chan error, 1)
	go func() { ch <- f.Error() }()
	select {
	case err := <-ch:
		return err
	case <-down:
		select {
		case err := <-ch:
			return err
		default:
			return raft.ErrRaftShutdown
		}
	}
}
