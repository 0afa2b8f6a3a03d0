package harness

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fencerlock/fencer/fence"
	"github.com/fencerlock/fencer/internal/check/analyze"
	"github.com/fencerlock/fencer/internal/check/procs"
	"github.com/fencerlock/fencer/internal/check/traffic"
	"github.com/fencerlock/fencer/internal/cluster"
	"github.com/fencerlock/fencer/internal/faults/netproxy"
	"github.com/fencerlock/fencer/internal/history"
	"github.com/fencerlock/fencer/internal/store"
	"github.com/fencerlock/fencer/server"
)

// Collected is what a run left behind, for analyze.Run.
type Collected struct {
	// History is every process's events, merged in time order.
	History []history.Event
	// Torn counts history files whose torn last line (a process killed
	// while writing) was skipped.
	Torn int
	// AcceptLog is the store's accept log.
	AcceptLog []store.Entry
	// Final is the store's final state of every key the workers used.
	Final analyze.FinalState
	// Replicas are the fencer nodes' states (nil for other backends).
	Replicas []server.NodeState
	// Notes say what the harness could not do at the end (e.g. replicas
	// that did not converge); the report shows them.
	Notes []string
}

// settle is how long Collect waits after healing for held and delayed
// requests to land.
const settle = 300 * time.Millisecond

// Collect ends the run: it stops the workers, heals every fault, restarts
// killed fencer nodes and waits for the replicas to converge, reads the
// store's final state and accept log, and merges the histories. The
// processes keep running until Close. It returns what it could collect,
// with an error for what went wrong (a worker that failed, a store that
// does not answer).
func (e *Env) Collect(ctx context.Context) (*Collected, error) {
	out := &Collected{}
	var errs []error

	e.mu.Lock()
	ws := make([]*worker, 0, len(e.workers))
	for _, w := range e.workers {
		ws = append(ws, w)
	}
	e.mu.Unlock()
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Go(func() { e.stopWorker(w, 10*time.Second) })
	}
	wg.Wait()
	errs = append(errs, e.workerFailures())

	// Heal everything, so held requests land and every node can catch up.
	for _, k := range e.activeFaults() {
		kind, target := k.kind, k.target
		switch {
		case k.isLink():
			from, to, _ := strings.Cut(target, "→")
			errs = append(errs, e.SetLink(from, to, netproxy.Fault{}))
		case kind == FaultClockJump:
			errs = append(errs, e.JumpClock(target, 0))
		case kind == FaultClockSkew:
			errs = append(errs, e.SkewClock(target, 1))
		case kind == FaultReplicationHold && e.redis["primary"] != nil:
			// A promoted replica no longer replicates; otherwise let the
			// stream through.
			errs = append(errs, e.repl.Heal())
			e.faultEnd(kind, target)
		}
	}
	errs = append(errs, e.Heal())
	if e.cluster != nil {
		for _, n := range e.cluster.Nodes() {
			switch n.Status {
			case cluster.StatusPaused:
				errs = append(errs, e.Resume(n.ID))
			case cluster.StatusStopped:
				rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				errs = append(errs, e.Restart(rctx, n.ID))
				cancel()
			}
		}
	}
	for name, r := range e.redis {
		if p := r.Proc(); !p.Exited() && procs.ProcState(p.Pid()) == 'T' {
			errs = append(errs, e.Resume(name))
		}
	}
	_ = Sleep(ctx, settle)

	if e.cluster != nil {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		if err := e.cluster.WaitConverged(cctx); err != nil {
			out.Notes = append(out.Notes, "the replicas did not converge within 30s: "+err.Error())
		}
		cancel()
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		states, err := e.cluster.States(sctx)
		cancel()
		out.Replicas = states
		if err != nil {
			out.Notes = append(out.Notes, "not every replica answered for its state: "+err.Error())
		}
	}

	final, err := e.readFinal(ctx)
	errs = append(errs, err)
	out.Final = final
	out.AcceptLog, err = e.readAcceptLog(ctx)
	errs = append(errs, err)

	if err := e.rec.Close(); err != nil && !errors.Is(err, history.ErrClosed) {
		errs = append(errs, err)
	}
	files, err := filepath.Glob(filepath.Join(e.cfg.Dir, "history", "*.jsonl"))
	errs = append(errs, err)
	sort.Strings(files)
	out.History, out.Torn, err = history.Merge(files...)
	errs = append(errs, err)
	e.mu.Lock()
	errs = append(errs, e.errs...)
	e.mu.Unlock()
	return out, errors.Join(errs...)
}

// keys returns the store keys the workers used.
func (e *Env) keys() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	seen := map[string]bool{}
	var keys []string
	for _, w := range e.workers {
		k := w.spec.Lock
		if k == "" {
			k = traffic.DefaultLock
		}
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

// readFinal reads every key from the store with the highest token there
// is, which no stale request can pass afterwards.
func (e *Env) readFinal(ctx context.Context) (analyze.FinalState, error) {
	var final analyze.FinalState
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var errs []error
	for _, k := range e.keys() {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.store.URL()+"/v1/objects/"+url.PathEscape(k), nil)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		req.Header.Set(fence.Header, strconv.FormatUint(math.MaxUint64, 10))
		resp, err := hc.Do(req)
		if err != nil {
			errs = append(errs, fmt.Errorf("harness: read the final value of %s: %w", k, err))
			continue
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("harness: read the final value of %s: %w", k, err))
			continue
		}
		value := ""
		switch resp.StatusCode {
		case http.StatusOK:
			value = string(body)
		case http.StatusNotFound:
		default:
			errs = append(errs, fmt.Errorf("harness: read the final value of %s: %s: %s", k, resp.Status, strings.TrimSpace(string(body))))
			continue
		}
		if e.cfg.Workload == analyze.WorkloadSet {
			if final.Sets == nil {
				final.Sets = map[string][]string{}
			}
			var elems []string
			for _, el := range strings.Split(value, ",") {
				if el = strings.TrimSpace(el); el != "" {
					elems = append(elems, el)
				}
			}
			final.Sets[k] = elems
			continue
		}
		if final.Counters == nil {
			final.Counters = map[string]int64{}
		}
		n, err := strconv.ParseInt(strings.TrimSpace(value), 10, 64)
		if err != nil && strings.TrimSpace(value) != "" {
			errs = append(errs, fmt.Errorf("harness: the final value of %s is %q, not a counter", k, value))
			continue
		}
		final.Counters[k] = n
	}
	return final, errors.Join(errs...)
}

// readAcceptLog reads the store's accept log.
func (e *Env) readAcceptLog(ctx context.Context) ([]store.Entry, error) {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, e.store.URL()+"/v1/log", nil)
	if err != nil {
		return nil, err
	}
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("harness: read the store's accept log: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("harness: read the store's accept log: %s", resp.Status)
	}
	var entries []store.Entry
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var en store.Entry
		if err := json.Unmarshal(sc.Bytes(), &en); err != nil {
			return entries, fmt.Errorf("harness: the store's accept log has a line that is not an entry: %w", err)
		}
		entries = append(entries, en)
	}
	return entries, sc.Err()
}
