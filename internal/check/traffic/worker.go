package traffic

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/backends"
	"github.com/fencerlock/fencer/client"
	"github.com/fencerlock/fencer/fence"
	"github.com/fencerlock/fencer/internal/check/analyze"
	"github.com/fencerlock/fencer/internal/failpoint"
	"github.com/fencerlock/fencer/internal/history"
	"github.com/fencerlock/fencer/redlock"
)

// The history attributes a worker adds beyond those package analyze reads.
const (
	// AttrTTL, on acquire-ok: the lease's TTL, a Go duration.
	AttrTTL = "ttl"
	// AttrFailpoint, on a pause or a sleep span: the failpoint that fired.
	AttrFailpoint = "failpoint"
)

// FaultSleep is the fault kind of a failpoint that slept.
const FaultSleep = "sleep"

// worker is one running worker. Its fields are set up by Run and not
// changed afterwards, except through the recorder and the failpoints,
// which are safe for concurrent use.
type worker struct {
	cfg    Config
	rec    *history.Recorder
	fps    *failpoint.Set
	client *fencer.Client
	hc     *http.Client
	closer []func() error // run after client.Close, in order

	recErr error // first recording error; guarded by recMu
	recMu  sync.Mutex
}

// Run runs the worker described by cfg until it has done cfg.Iterations
// iterations or ctx ends, then releases what it holds and closes the
// history. It returns an error when the configuration is invalid, the
// backend cannot be opened or the history cannot be written.
func Run(ctx context.Context, cfg Config) (err error) {
	cfg, err = cfg.withDefaults()
	if err != nil {
		return err
	}
	w := &worker{cfg: cfg}
	w.rec, err = history.Create(cfg.History, &history.Options{Process: cfg.Name})
	if err != nil {
		return err
	}
	defer func() {
		err = errors.Join(err, w.rec.Close(), w.recordErr())
	}()
	w.fps, err = failpoint.Parse(cfg.Failpoints, &failpoint.Options{
		Names:    Points(),
		OnFire:   w.onFire,
		OnReturn: w.onReturn,
	})
	if err != nil {
		return err
	}
	backend, closers, err := w.openBackend(ctx)
	if err != nil {
		return err
	}
	w.closer = closers
	w.client = fencer.New(backend, nil)
	defer func() {
		cerr := w.client.Close()
		for _, c := range w.closer {
			cerr = errors.Join(cerr, c())
		}
		if cerr != nil {
			err = errors.Join(err, fmt.Errorf("check-worker: close the backend: %w", cerr))
		}
	}()
	if info := w.client.Info(); !info.Tokens && !cfg.Unfenced {
		return fmt.Errorf("check-worker: the %s backend issues no fencing tokens; run the worker with --unfenced (the store then cannot fence it)", info.Kind)
	}
	w.hc = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: 30 * time.Second}}
	defer w.hc.CloseIdleConnections()

	for i := 1; cfg.Iterations == 0 || i <= cfg.Iterations; i++ {
		if ctx.Err() != nil {
			break
		}
		w.iteration(ctx, i)
		if err := w.recordErr(); err != nil {
			return err
		}
		if cfg.Think > 0 {
			sleep(ctx, cfg.Think)
		}
	}
	return nil
}

// openBackend opens the lock backend of the URL, with the worker's
// failpoint in Redlock. The closers close what the backend does not own,
// after the backend.
func (w *worker) openBackend(ctx context.Context) (fencer.Backend, []func() error, error) {
	scheme, _, _ := strings.Cut(w.cfg.Backend, "://")
	switch scheme {
	case NaiveScheme:
		b, err := openNaive(w.cfg.Backend)
		return b, nil, err
	case "redlock":
		opts, err := redlock.ParseURL(w.cfg.Backend)
		if err != nil {
			return nil, nil, err
		}
		clients := make([]redis.UniversalClient, len(opts))
		var closers []func() error
		for i, o := range opts {
			c := redis.NewClient(o)
			clients[i] = c
			closers = append(closers, c.Close)
		}
		b, err := redlock.New(redlock.Config{
			Clients:      clients,
			NodeTimeout:  w.cfg.RedlockNodeTimeout,
			AfterReplies: func() { w.fps.Eval(PointRedlockAfterReplies) },
		})
		if err != nil {
			for _, c := range closers {
				c()
			}
			return nil, nil, err
		}
		return b, closers, nil
	}
	if len(w.cfg.Via) > 0 {
		cfg, err := client.ParseURL(w.cfg.Backend)
		if err != nil {
			return nil, nil, err
		}
		var d net.Dialer
		cfg.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			if p, ok := w.cfg.Via[addr]; ok {
				addr = p
			}
			return d.DialContext(ctx, network, addr)
		}
		b, err := client.New(cfg)
		return b, nil, err
	}
	b, err := backends.Open(ctx, w.cfg.Backend)
	return b, nil, err
}

// record appends e to the history; the first error is kept and ends the
// run at the next iteration.
func (w *worker) record(e history.Event) {
	if err := w.rec.Record(e); err != nil {
		w.recMu.Lock()
		if w.recErr == nil {
			w.recErr = fmt.Errorf("check-worker: record the history: %w", err)
		}
		w.recMu.Unlock()
	}
}

func (w *worker) recordErr() error {
	w.recMu.Lock()
	defer w.recMu.Unlock()
	return w.recErr
}

// invoke records an invocation and returns its op number.
func (w *worker) invoke(kind history.Kind, token uint64, value string, attrs map[string]string) uint64 {
	op := w.rec.NextOp()
	w.record(history.Event{Op: op, Kind: kind, Lock: w.cfg.Lock, Token: token, Value: value, Attrs: attrs})
	return op
}

// complete records the completion of op.
func (w *worker) complete(op uint64, e history.Event) {
	e.Op, e.Lock = op, w.cfg.Lock
	w.record(e)
}

// onFire records a failpoint about to act. A stop is a pause of this
// process: recorded, and flushed, before the process stops; the harness
// records the resume when it sends SIGCONT.
func (w *worker) onFire(name string, a failpoint.Action) {
	attrs := map[string]string{AttrFailpoint: name}
	switch a.Kind {
	case failpoint.Stop:
		w.record(history.Event{Kind: history.Pause, Attrs: attrs})
	case failpoint.Sleep:
		attrs[analyze.AttrFault], attrs[analyze.AttrTarget] = FaultSleep, w.cfg.Name
		w.record(history.Event{Kind: history.FaultStart, Attrs: attrs})
	case failpoint.Kill:
		attrs[analyze.AttrFault], attrs[analyze.AttrTarget] = analyze.FaultKill, w.cfg.Name
		w.record(history.Event{Kind: history.FaultStart, Attrs: attrs})
	}
	// Flushed before the process stops or dies. A write error sticks in
	// the recorder and ends the run at the next Record.
	_ = w.rec.Flush()
}

func (w *worker) onReturn(name string, a failpoint.Action) {
	if a.Kind == failpoint.Sleep {
		w.record(history.Event{Kind: history.FaultEnd, Attrs: map[string]string{
			AttrFailpoint: name, analyze.AttrFault: FaultSleep, analyze.AttrTarget: w.cfg.Name}})
	}
}

// monotonic converts a time of this process's clock into a history time.
func monotonic(t time.Time) history.Time {
	return history.Now().Add(time.Until(t))
}

// iteration runs one acquire, read, write, release.
func (w *worker) iteration(ctx context.Context, i int) {
	lease := w.acquire(ctx)
	if lease == nil {
		if ctx.Err() == nil {
			sleep(ctx, 10*time.Millisecond) // not a tight loop against a failing store
		}
		return
	}
	watch := w.watch(lease)
	w.fps.Eval(PointAfterAcquire)
	token := uint64(lease.Token())
	if w.cfg.Unfenced {
		token = UnfencedToken
	}
	if value, ok := w.read(ctx, token); ok {
		w.fps.Eval(PointAfterRead)
		if w.cfg.Hold > 0 {
			sleep(ctx, w.cfg.Hold)
		}
		if (w.cfg.NoLeaseCheck || lease.Err() == nil) && ctx.Err() == nil {
			w.fps.Eval(PointBeforeWrite)
			w.write(ctx, token, w.next(value, i))
		}
	}
	w.fps.Eval(PointBeforeRelease)
	w.release(lease)
	watch()
}

func (w *worker) acquire(ctx context.Context) *fencer.Lease {
	op := w.invoke(history.AcquireInvoke, 0, "", nil)
	actx, cancel := context.WithTimeout(ctx, w.cfg.AcquireTimeout)
	lease, err := w.client.Acquire(actx, w.cfg.Lock, &fencer.Options{TTL: w.cfg.TTL})
	cancel()
	if err != nil {
		kind := history.AcquireUnknown
		if errors.Is(err, fencer.ErrLocked) || errors.Is(err, fencer.ErrInvalid) || errors.Is(err, fencer.ErrGuarantee) || errors.Is(err, fencer.ErrClosed) {
			kind = history.AcquireFail
		}
		w.complete(op, history.Event{Kind: kind, Err: err.Error()})
		return nil
	}
	safe := "false"
	if lease.SafeToken() {
		safe = "true"
	}
	w.complete(op, history.Event{Kind: history.AcquireOK, Token: uint64(lease.Token()), Attrs: map[string]string{
		analyze.AttrValidUntil: strconv.FormatInt(int64(monotonic(lease.ValidUntil())), 10),
		analyze.AttrSafeToken:  safe,
		AttrTTL:                w.cfg.TTL.String(),
	}})
	return lease
}

// watch records lease-extended and lease-lost events of l until the
// returned function is called (which waits for the watcher to stop).
func (w *worker) watch(l *fencer.Lease) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	token := uint64(l.Token())
	go func() {
		defer close(done)
		every := min(max(w.cfg.TTL/20, 5*time.Millisecond), 50*time.Millisecond)
		tick := time.NewTicker(every)
		defer tick.Stop()
		last := l.ValidUntil()
		for {
			select {
			case <-l.Done():
				if err := l.Err(); !errors.Is(err, fencer.ErrReleased) {
					w.record(history.Event{Kind: history.LeaseLost, Lock: w.cfg.Lock, Token: token, Err: errString(err)})
				}
				return
			case <-quit:
				return
			case <-tick.C:
				if vu := l.ValidUntil(); vu.After(last) {
					last = vu
					w.record(history.Event{Kind: analyze.KindLeaseExtended, Lock: w.cfg.Lock, Token: token, Attrs: map[string]string{
						analyze.AttrValidUntil: strconv.FormatInt(int64(monotonic(vu)), 10)}})
				}
			}
		}
	}()
	return func() {
		close(quit)
		<-done
	}
}

func (w *worker) release(l *fencer.Lease) {
	token := uint64(l.Token())
	op := w.invoke(history.ReleaseInvoke, token, "", nil)
	// Not the run's ctx: a worker told to stop still gives the lock back.
	ctx, cancel := context.WithTimeout(context.Background(), min(max(w.cfg.TTL, time.Second), 5*time.Second))
	err := l.Release(ctx)
	cancel()
	switch {
	case err == nil:
		w.complete(op, history.Event{Kind: history.ReleaseOK, Token: token})
	case errors.Is(err, fencer.ErrLeaseLost):
		w.complete(op, history.Event{Kind: history.ReleaseFail, Token: token, Err: err.Error()})
	default:
		w.complete(op, history.Event{Kind: history.ReleaseUnknown, Token: token, Err: err.Error()})
	}
}

func (w *worker) objectURL() string {
	return strings.TrimSuffix(w.cfg.Store, "/") + "/v1/objects/" + url.PathEscape(w.cfg.Key)
}

func (w *worker) keyAttrs() map[string]string {
	if w.cfg.Key == w.cfg.Lock {
		return nil
	}
	return map[string]string{analyze.AttrKey: w.cfg.Key}
}

// read GETs the key with token; ok is false unless it returned a value.
func (w *worker) read(ctx context.Context, token uint64) (value string, ok bool) {
	op := w.invoke(history.ReadInvoke, token, "", w.keyAttrs())
	status, body, err := w.do(ctx, http.MethodGet, token, "")
	attrs := w.keyAttrs()
	switch {
	case err != nil:
		w.complete(op, history.Event{Kind: history.ReadUnknown, Token: token, Err: err.Error(), Attrs: attrs})
	case status == http.StatusOK || status == http.StatusNotFound:
		if status == http.StatusNotFound {
			body = ""
		}
		w.complete(op, history.Event{Kind: history.ReadOK, Token: token, Value: body, Attrs: attrs})
		return body, true
	case status >= 400 && status < 500:
		w.complete(op, history.Event{Kind: history.ReadFail, Token: token, Err: firstLine(body), Attrs: withStatus(attrs, status)})
	default:
		w.complete(op, history.Event{Kind: history.ReadUnknown, Token: token, Err: firstLine(body), Attrs: withStatus(attrs, status)})
	}
	return "", false
}

func (w *worker) write(ctx context.Context, token uint64, value string) {
	op := w.invoke(history.WriteInvoke, token, value, w.keyAttrs())
	status, body, err := w.do(ctx, http.MethodPut, token, value)
	attrs := w.keyAttrs()
	switch {
	case err != nil:
		w.complete(op, history.Event{Kind: history.WriteUnknown, Token: token, Err: err.Error(), Attrs: attrs})
	case status == http.StatusNoContent || status == http.StatusOK:
		w.complete(op, history.Event{Kind: history.WriteOK, Token: token, Attrs: attrs})
	case status == http.StatusConflict:
		w.complete(op, history.Event{Kind: history.WriteRejected, Token: token, Err: firstLine(body), Attrs: withStatus(attrs, status)})
	case status >= 400 && status < 500:
		w.complete(op, history.Event{Kind: history.WriteFail, Token: token, Err: firstLine(body), Attrs: withStatus(attrs, status)})
	default:
		w.complete(op, history.Event{Kind: history.WriteUnknown, Token: token, Err: firstLine(body), Attrs: withStatus(attrs, status)})
	}
}

// do makes one store request, bounded by the store timeout.
func (w *worker) do(ctx context.Context, method string, token uint64, body string) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.StoreTimeout)
	defer cancel()
	var rd io.Reader
	if method == http.MethodPut {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, w.objectURL(), rd)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set(fence.Header, strconv.FormatUint(token, 10))
	resp, err := w.hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 2<<20))
	if err != nil {
		return 0, "", fmt.Errorf("read the store's %d response: %w", resp.StatusCode, err)
	}
	return resp.StatusCode, string(b), nil
}

// next returns the value to write after reading value in iteration i.
func (w *worker) next(value string, i int) string {
	if w.cfg.Workload == analyze.WorkloadSet {
		elems := map[string]bool{}
		for _, e := range strings.Split(value, ",") {
			if e = strings.TrimSpace(e); e != "" {
				elems[e] = true
			}
		}
		elems[fmt.Sprintf("%s.%d-%d", w.cfg.Name, w.cfg.Incarnation, i)] = true
		out := make([]string, 0, len(elems))
		for e := range elems {
			out = append(out, e)
		}
		sort.Strings(out)
		return strings.Join(out, ",")
	}
	v, err := strconv.ParseInt(strings.TrimSpace(value), 10, 64)
	if err != nil && strings.TrimSpace(value) != "" {
		// Not a counter: write it back unchanged so the checker sees it.
		return value
	}
	return strconv.FormatInt(v+1, 10)
}

func withStatus(attrs map[string]string, status int) map[string]string {
	out := map[string]string{analyze.AttrStatus: strconv.Itoa(status)}
	for k, v := range attrs {
		out[k] = v
	}
	return out
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
