package harness

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/fencerlock/fencer/internal/check/procs"
	"github.com/fencerlock/fencer/internal/check/traffic"
	"github.com/fencerlock/fencer/internal/history"
	"github.com/fencerlock/fencer/internal/testutil"
)

// WorkerSpec describes one client worker. Zero fields take package
// traffic's defaults.
type WorkerSpec struct {
	// Name is the worker's process name, e.g. "c1". Required, unique.
	Name string
	// Iterations to run; 0 runs until Collect stops the worker.
	Iterations int
	// Lock is the lock (and store key); default traffic.DefaultLock.
	Lock string
	// TTL is the leases' TTL.
	TTL time.Duration
	// Hold is the work time between read and write; Think the pause
	// between iterations.
	Hold, Think time.Duration
	// AcquireTimeout and StoreTimeout bound an acquire and a store
	// request.
	AcquireTimeout, StoreTimeout time.Duration
	// Failpoints arms the worker's failpoints (package failpoint's spec).
	Failpoints string
	// NoLeaseCheck: the worker does not look at its lease before writing.
	NoLeaseCheck bool
	// RedlockNodeTimeout is Redlock's per-node timeout (0: its default).
	RedlockNodeTimeout time.Duration
}

// worker is a started worker and its incarnations.
type worker struct {
	spec WorkerSpec

	mu          sync.Mutex
	proc        *testutil.Proc
	incarnation int
	histories   []string
	stopping    bool // Collect or Kill is ending it: its exit is not a failure
}

func (w *worker) current() *testutil.Proc {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.proc
}

func (w *worker) kill() {
	w.mu.Lock()
	w.stopping = true
	p := w.proc
	w.mu.Unlock()
	if p != nil {
		p.Kill()
	}
}

// StartWorker starts a worker process. Its links (to the store and to
// every node of the lock service) are proxies of its own; faults set on
// them before the start apply from its first connection.
func (e *Env) StartWorker(ctx context.Context, spec WorkerSpec) error {
	if spec.Name == "" {
		return errors.New("harness: a worker needs a name")
	}
	e.mu.Lock()
	if _, dup := e.workers[spec.Name]; dup {
		e.mu.Unlock()
		return fmt.Errorf("harness: there is already a worker %q", spec.Name)
	}
	w := &worker{spec: spec}
	e.workers[spec.Name] = w
	e.mu.Unlock()
	return e.launch(ctx, w)
}

// launch starts w's next incarnation.
func (e *Env) launch(ctx context.Context, w *worker) error {
	spec := w.spec
	backend, via, err := e.lockURL(ctx, spec.Name)
	if err != nil {
		return err
	}
	store, err := e.link(spec.Name, "store")
	if err != nil {
		return err
	}
	w.mu.Lock()
	w.incarnation++
	inc := w.incarnation
	w.stopping = false
	w.mu.Unlock()
	hist := filepath.Join(e.cfg.Dir, "history", fmt.Sprintf("%s-%d.jsonl", spec.Name, inc))
	cfg := traffic.Config{
		Name:               spec.Name,
		Incarnation:        inc,
		History:            hist,
		Backend:            backend,
		Lock:               spec.Lock,
		Store:              "http://" + store.Addr(),
		Workload:           e.cfg.Workload,
		Iterations:         spec.Iterations,
		TTL:                spec.TTL,
		AcquireTimeout:     spec.AcquireTimeout,
		StoreTimeout:       spec.StoreTimeout,
		Hold:               spec.Hold,
		Think:              spec.Think,
		Unfenced:           e.cfg.Setup.StoreUnfenced(),
		NoLeaseCheck:       spec.NoLeaseCheck,
		Failpoints:         spec.Failpoints,
		RedlockNodeTimeout: spec.RedlockNodeTimeout,
		Via:                via,
	}
	cmd := exec.Command(e.cfg.Binary, append([]string{"check-worker"}, cfg.Args()...)...)
	p, err := testutil.StartProc(filepath.Join(e.cfg.Dir, "logs"), fmt.Sprintf("%s-%d", spec.Name, inc), cmd)
	if err != nil {
		return fmt.Errorf("harness: start worker %s: %w", spec.Name, err)
	}
	w.mu.Lock()
	w.proc = p
	w.histories = append(w.histories, hist)
	w.mu.Unlock()
	e.log.Info("harness: worker started", "worker", spec.Name, "incarnation", inc, "pid", p.Pid(), "failpoints", spec.Failpoints)
	return nil
}

func (e *Env) worker(name string) (*worker, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	w := e.workers[name]
	if w == nil {
		return nil, fmt.Errorf("harness: no worker %q", name)
	}
	return w, nil
}

func (e *Env) isWorker(name string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.workers[name] != nil
}

// WaitStopped waits until worker name's process is stopped (by a
// failpoint's SIGSTOP). It fails if the worker exits first or ctx ends.
func (e *Env) WaitStopped(ctx context.Context, name string) error {
	w, err := e.worker(name)
	if err != nil {
		return err
	}
	for {
		p := w.current()
		if procs.ProcState(p.Pid()) == 'T' {
			return nil
		}
		if p.Exited() {
			return fmt.Errorf("harness: worker %s exited instead of stopping at its failpoint: %v\n%s", name, p.ExitErr(), p.LogTail(1500))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("harness: worker %s did not stop at its failpoint: %w", name, ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// WaitWorkers waits until the named workers (all when none is named) have
// exited: those started with Iterations finish on their own.
func (e *Env) WaitWorkers(ctx context.Context, names ...string) error {
	if len(names) == 0 {
		e.mu.Lock()
		for n := range e.workers {
			names = append(names, n)
		}
		e.mu.Unlock()
	}
	for _, n := range names {
		w, err := e.worker(n)
		if err != nil {
			return err
		}
		select {
		case <-w.current().Done():
		case <-ctx.Done():
			return fmt.Errorf("harness: worker %s has not finished: %w", n, ctx.Err())
		}
	}
	return nil
}

// Events returns the events worker name has recorded so far, in all its
// incarnations.
func (e *Env) Events(name string) ([]history.Event, error) {
	w, err := e.worker(name)
	if err != nil {
		return nil, err
	}
	w.mu.Lock()
	files := append([]string(nil), w.histories...)
	w.mu.Unlock()
	var out []history.Event
	for _, f := range files {
		evs, _, err := history.ReadFile(f)
		if errors.Is(err, fs.ErrNotExist) {
			continue // the worker has not created it yet
		}
		if err != nil {
			return nil, err
		}
		out = append(out, evs...)
	}
	return out, nil
}

// WaitEvent waits until worker name has recorded at least n events that
// match (of its own process), and returns the n-th. It fails if ctx ends
// first.
func (e *Env) WaitEvent(ctx context.Context, name string, n int, match func(history.Event) bool) (history.Event, error) {
	for {
		evs, err := e.Events(name)
		if err != nil {
			return history.Event{}, err
		}
		seen := 0
		for _, ev := range evs {
			if ev.Process == name && match(ev) {
				if seen++; seen == n {
					return ev, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return history.Event{}, fmt.Errorf("harness: worker %s recorded %d of the %d events waited for: %w", name, seen, n, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// WaitKind waits for the n-th event of kind recorded by worker name.
func (e *Env) WaitKind(ctx context.Context, name string, kind history.Kind, n int) (history.Event, error) {
	return e.WaitEvent(ctx, name, n, func(ev history.Event) bool { return ev.Kind == kind })
}

// WaitKindFor is WaitKind bounded by d: ok is false if the event did not
// come within d (which is not an error).
func (e *Env) WaitKindFor(ctx context.Context, name string, kind history.Kind, n int, d time.Duration) (ok bool, err error) {
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	_, err = e.WaitKind(wctx, name, kind, n)
	if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		return false, nil
	}
	return err == nil, err
}

// stopWorker asks worker w to stop (SIGCONT first if paused, then
// SIGTERM), and kills it after grace.
func (e *Env) stopWorker(w *worker, grace time.Duration) {
	w.mu.Lock()
	w.stopping = true
	p := w.proc
	w.mu.Unlock()
	if p == nil || p.Exited() {
		return
	}
	if procs.ProcState(p.Pid()) == 'T' {
		e.resumeProcess(w.spec.Name, p)
	}
	_ = p.Stop(grace)
}

// workerFailures returns an error for every worker incarnation that
// exited with a non-zero status on its own.
func (e *Env) workerFailures() error {
	e.mu.Lock()
	ws := make([]*worker, 0, len(e.workers))
	for _, w := range e.workers {
		ws = append(ws, w)
	}
	e.mu.Unlock()
	var errs []error
	for _, w := range ws {
		p := w.current()
		if p == nil || !p.Exited() {
			continue
		}
		var ee *exec.ExitError
		if err := p.ExitErr(); errors.As(err, &ee) {
			if st, ok := ee.Sys().(syscall.WaitStatus); ok && st.Exited() && st.ExitStatus() != 0 {
				errs = append(errs, fmt.Errorf("harness: worker %s exited with status %d:\n%s", w.spec.Name, st.ExitStatus(), p.LogTail(1500)))
			}
		}
	}
	return errors.Join(errs...)
}

// resumeProcess sends SIGCONT to a stopped process and records the resume.
func (e *Env) resumeProcess(name string, p *testutil.Proc) {
	e.record(history.Event{Process: name, Kind: history.Resume})
	_ = p.Resume()
	e.log.Info("harness: resumed", "process", name)
}

// Stopped reports whether worker name's process is stopped (SIGSTOP).
func (e *Env) Stopped(name string) bool {
	w, err := e.worker(name)
	if err != nil {
		return false
	}
	p := w.current()
	return p != nil && !p.Exited() && procs.ProcState(p.Pid()) == 'T'
}
