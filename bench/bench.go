package bench

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/fencerlock/fencer"
)

// Locker is one benchmark client's handle on a lock service.
//
// Run calls a Locker from one goroutine at a time, unless the same Locker
// appears more than once in the slice given to Run: then it is called
// concurrently and must be safe for that.
type Locker interface {
	// Acquire blocks until the lock name is granted, or ctx is done, in
	// which case it returns an error (wrapping ctx.Err() where it can).
	// A lock that is free must be granted without waiting.
	Acquire(ctx context.Context, name string) (Held, error)
}

// Held is a granted lock.
type Held interface {
	// Release gives the lock up. It returns an error wrapping
	// fencer.ErrLeaseLost if the store no longer recorded the grant.
	Release(ctx context.Context) error
}

// RenewalCounter is implemented by Lockers that can tell how many lease
// renewals they have made: Run reports the renewals made in its window.
type RenewalCounter interface {
	// Renewals returns the number of successful renewals so far.
	Renewals() int64
}

// Workload names what the clients do.
type Workload string

// The workloads; see the package documentation.
const (
	Uncontended Workload = "uncontended"
	Contended   Workload = "contended"
	Mixed       Workload = "mixed"
)

// Workloads lists the workloads Run accepts.
func Workloads() []Workload { return []Workload{Uncontended, Contended, Mixed} }

// ParseWorkload returns the Workload named s, or an *fencer.InvalidError.
func ParseWorkload(s string) (Workload, error) {
	for _, w := range Workloads() {
		if string(w) == s {
			return w, nil
		}
	}
	return "", &fencer.InvalidError{Field: "workload", Value: s, Accepted: "uncontended, contended or mixed"}
}

// Limits on a Config.
const (
	MaxClients  = 4096
	MaxLocks    = 1 << 20
	MaxDuration = 24 * time.Hour
	MinDuration = 100 * time.Millisecond
	MaxWarmup   = time.Hour
	MaxHold     = time.Hour
)

// Config describes one run. A zero field means its default, named in the
// field's comment.
type Config struct {
	// Workload is what the clients do. Required.
	Workload Workload

	// Locks is the number of distinct locks of the mixed workload, from 1
	// to MaxLocks. Default: a quarter of the clients, at least 1. The
	// uncontended workload uses one lock per client and the contended one
	// a single lock: for them Locks must be zero or that number.
	Locks int

	// Duration is the measured window, after the warm-up: MinDuration to
	// MaxDuration. Required.
	Duration time.Duration

	// Warmup runs the workload unmeasured before the window, so that
	// connections are open, scripts loaded and caches warm: 0 to MaxWarmup.
	// Zero means no warm-up.
	Warmup time.Duration

	// Hold is how long a client holds each grant before releasing it: 0
	// to MaxHold. Zero releases at once.
	Hold time.Duration

	// AcquireTimeout bounds each Acquire; one that runs out counts as an
	// "acquire:timeout" error. Default 30s.
	AcquireTimeout time.Duration

	// ReleaseTimeout bounds each Release. Default 10s.
	ReleaseTimeout time.Duration

	// Prefix starts every lock name; the names are Prefix + "/" + a number.
	// Default "bench/" and 8 random hex digits, so that runs never share
	// locks. 1 to 200 bytes.
	Prefix string

	// Seed seeds the mixed workload's choice of locks. Zero means a random
	// seed.
	Seed uint64

	// Progress, if not nil, is called about once a second while the run
	// lasts, from a goroutine of Run's own. It must return quickly.
	Progress func(Progress)
}

// Progress is a snapshot of a run in progress.
type Progress struct {
	// Elapsed is the time since the run began, warm-up included.
	Elapsed time.Duration
	// Measuring is false during the warm-up.
	Measuring bool
	// PairsPerSec is the rate of acquire+release pairs since the last
	// snapshot.
	PairsPerSec float64
	// Pairs is the number of pairs since the run began, warm-up included.
	Pairs int64
	// Errors is the number of errors since the run began.
	Errors int64
	// Waiting is the number of acquires in progress.
	Waiting int64
}

const (
	defaultAcquireTimeout = 30 * time.Second
	defaultReleaseTimeout = 10 * time.Second
	// errorPause keeps a client that gets errors from spinning.
	errorPause = 10 * time.Millisecond
)

// locksFor returns the number of locks the workload uses with n clients.
func (c *Config) locksFor(n int) int {
	switch c.Workload {
	case Uncontended:
		return n
	case Contended:
		return 1
	}
	if c.Locks == 0 {
		return max(1, n/4)
	}
	return c.Locks
}

// Validate checks the Config for a run with n clients. Errors are
// *fencer.InvalidError and say what is accepted.
func (c *Config) Validate(n int) error {
	var errs []error
	bad := func(field, value, reason, accepted string) {
		errs = append(errs, &fencer.InvalidError{Field: field, Value: value, Reason: reason, Accepted: accepted})
	}
	if n < 1 || n > MaxClients {
		bad("number of clients", strconv.Itoa(n), "", "1 to "+strconv.Itoa(MaxClients))
	}
	if _, err := ParseWorkload(string(c.Workload)); err != nil {
		errs = append(errs, err)
	}
	switch c.Workload {
	case Uncontended:
		if c.Locks != 0 && c.Locks != n {
			bad("number of locks", strconv.Itoa(c.Locks), "the uncontended workload gives each of the "+strconv.Itoa(n)+" clients a lock of its own",
				"0 or "+strconv.Itoa(n)+" with uncontended; use the mixed workload to share locks")
		}
	case Contended:
		if c.Locks != 0 && c.Locks != 1 {
			bad("number of locks", strconv.Itoa(c.Locks), "the contended workload puts every client on one lock",
				"0 or 1 with contended; use the mixed workload for several shared locks")
		}
	case Mixed:
		if c.Locks < 0 || c.Locks > MaxLocks {
			bad("number of locks", strconv.Itoa(c.Locks), "", "1 to "+strconv.Itoa(MaxLocks)+", or 0 for a quarter of the clients")
		}
	}
	if c.Duration < MinDuration || c.Duration > MaxDuration {
		bad("duration", c.Duration.String(), "", "100ms to 24h")
	}
	if c.Warmup < 0 || c.Warmup > MaxWarmup {
		bad("warm-up", c.Warmup.String(), "", "0 to 1h")
	}
	if c.Hold < 0 || c.Hold > MaxHold {
		bad("hold", c.Hold.String(), "", "0 to 1h")
	}
	if c.AcquireTimeout < 0 || c.AcquireTimeout > MaxDuration {
		bad("acquire timeout", c.AcquireTimeout.String(), "", "0 (default 30s) or up to 24h")
	}
	if c.ReleaseTimeout < 0 || c.ReleaseTimeout > time.Hour {
		bad("release timeout", c.ReleaseTimeout.String(), "", "0 (default 10s) or up to 1h")
	}
	if len(c.Prefix) > 200 {
		bad("lock name prefix", c.Prefix, "it is "+strconv.Itoa(len(c.Prefix))+" bytes long", "1 to 200 bytes, or empty for a random one")
	} else if c.Prefix != "" {
		if err := fencer.ValidateName(c.Prefix + "/0"); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Run drives the workload with one goroutine per Locker (len(lockers) is
// the number of clients) for cfg.Warmup and then cfg.Duration, and returns
// the report of the measured window. It does not close the Lockers.
//
// When ctx ends early, Run stops the clients, waits for them and returns
// the report of what was measured so far with Interrupted set, or an error
// if the measured window had not begun. Run returns once every goroutine
// it started has stopped; a Locker whose Acquire ignores ctx delays that
// until AcquireTimeout.
func Run(ctx context.Context, cfg Config, lockers []Locker) (*Report, error) {
	if err := cfg.Validate(len(lockers)); err != nil {
		return nil, err
	}
	for i, l := range lockers {
		if l == nil {
			return nil, fmt.Errorf("bench: locker %d is nil; give Run one Locker per client", i)
		}
	}
	if cfg.AcquireTimeout == 0 {
		cfg.AcquireTimeout = defaultAcquireTimeout
	}
	if cfg.ReleaseTimeout == 0 {
		cfg.ReleaseTimeout = defaultReleaseTimeout
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "bench/" + randomHex(4)
	}
	if cfg.Seed == 0 {
		cfg.Seed = randomUint64()
	}
	r := newRun(cfg, lockers)
	return r.run(ctx)
}

// run is the state of one Run.
type run struct {
	cfg     Config
	lockers []Locker
	locks   []lockState
	clients []clientState
	shards  []shard

	start       time.Time
	from        time.Duration // the measured window's start, since start
	to          atomic.Int64  // its end (a time.Duration); brought forward if ctx ends early
	pairsAll    atomic.Int64  // every pair, warm-up included, for progress
	waitingAll  atomic.Int64
	overlaps    atomic.Int64
	errorsAll   atomic.Int64
	errMu       sync.Mutex
	errCounts   map[string]int64
	errSamples  map[string]string
	renewalsAt  [2]int64 // at the window's start and end
	interrupted bool
}

// lockState is what the clients of this process know about one lock.
type lockState struct {
	name         string
	holders      atomic.Int32 // clients that hold it now (more than 1 is an overlap)
	waiting      atomic.Int32 // clients in Acquire for it
	lastRelease  atomic.Int64 // when its last holder called Release, ns since start; 0: never
	lastReleaser atomic.Int64 // which client that was
	_            [64]byte     // keeps neighbouring locks' counters off this cache line
}

// clientState is one client's counters, written only by its goroutine
// during the run.
type clientState struct {
	grants   int64 // in the window
	handoffs int64
	retakes  int64
	pairs    int64
	_        [64]byte // keeps neighbouring clients' counters off this cache line
}

// shard holds histograms shared by a few clients: one set per client would
// cost megabytes with hundreds of clients, and one set for all would make
// every client wait for the others' records.
type shard struct {
	mu      sync.Mutex
	acquire *hdrhistogram.Histogram
	release *hdrhistogram.Histogram
	handoff *hdrhistogram.Histogram
}

// Histograms record microseconds, from 1 µs to 10 minutes, to 3
// significant digits.
const (
	histMin     = 1
	histMax     = int64(10 * time.Minute / time.Microsecond)
	histSigFigs = 3
	maxShards   = 16
)

func newHistogram() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, histSigFigs) }

func newRun(cfg Config, lockers []Locker) *run {
	n := len(lockers)
	r := &run{
		cfg:        cfg,
		lockers:    lockers,
		locks:      make([]lockState, cfg.locksFor(n)),
		clients:    make([]clientState, n),
		shards:     make([]shard, min(n, maxShards)),
		from:       cfg.Warmup,
		errCounts:  make(map[string]int64),
		errSamples: make(map[string]string),
	}
	r.to.Store(int64(cfg.Warmup + cfg.Duration))
	for i := range r.locks {
		r.locks[i].name = cfg.Prefix + "/" + strconv.Itoa(i)
	}
	for i := range r.shards {
		r.shards[i] = shard{acquire: newHistogram(), release: newHistogram(), handoff: newHistogram()}
	}
	return r
}

func (r *run) now() time.Duration { return time.Since(r.start) }

func (r *run) inWindow(t time.Duration) bool { return t >= r.from && int64(t) < r.to.Load() }

func (r *run) run(ctx context.Context) (*Report, error) {
	r.start = time.Now()
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	r.renewalsAt[0] = r.renewals() // replaced at the window's start

	var wg sync.WaitGroup
	for i := range r.lockers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.client(runCtx, i)
		}()
	}
	clockDone := make(chan struct{})
	go func() {
		defer close(clockDone)
		r.clock(ctx, stop)
	}()
	<-clockDone
	wg.Wait()
	if to := time.Duration(r.to.Load()); to <= r.from {
		return nil, fmt.Errorf("bench: interrupted during the warm-up, after %v; nothing was measured: %w", to.Round(time.Millisecond), context.Cause(ctx))
	}
	return r.report(), nil
}

// clock reports progress once a second, notes the renewal count at the
// window's start and end, and stops the clients when the window ends or
// ctx is done.
func (r *run) clock(ctx context.Context, stop context.CancelFunc) {
	defer stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	windowStart := time.NewTimer(r.from)
	defer windowStart.Stop()
	end := time.NewTimer(time.Duration(r.to.Load()))
	defer end.Stop()
	lastPairs, last := int64(0), time.Now()
	for {
		select {
		case <-windowStart.C:
			r.renewalsAt[0] = r.renewals()
		case <-tick.C:
			if r.cfg.Progress == nil {
				continue
			}
			now, pairs := time.Now(), r.pairsAll.Load()
			el := now.Sub(r.start)
			r.cfg.Progress(Progress{
				Elapsed:     el,
				Measuring:   el >= r.from,
				PairsPerSec: float64(pairs-lastPairs) / now.Sub(last).Seconds(),
				Pairs:       pairs,
				Errors:      r.errorsAll.Load(),
				Waiting:     r.waitingAll.Load(),
			})
			lastPairs, last = pairs, now
		case <-end.C:
			r.renewalsAt[1] = r.renewals()
			return
		case <-ctx.Done():
			r.renewalsAt[1] = r.renewals()
			r.interrupted = true
			r.to.Store(min(r.to.Load(), int64(r.now())))
			return
		}
	}
}

// renewals sums the renewal counts of the distinct Lockers that keep one.
func (r *run) renewals() int64 {
	var sum int64
	seen := make(map[any]bool)
	for _, l := range r.lockers {
		rc, ok := l.(RenewalCounter)
		if !ok {
			continue
		}
		if reflect.TypeOf(rc).Comparable() {
			if seen[rc] {
				continue
			}
			seen[rc] = true
		}
		sum += rc.Renewals()
	}
	return sum
}

// pick returns the index of the lock client i uses next.
func (r *run) pick(i int, rng *mrand.Rand) int {
	switch r.cfg.Workload {
	case Uncontended:
		return i
	case Contended:
		return 0
	}
	return rng.IntN(len(r.locks))
}

// client is one client's loop: acquire, hold, release, until ctx ends.
func (r *run) client(ctx context.Context, i int) {
	l := r.lockers[i]
	st := &r.clients[i]
	sh := &r.shards[i%len(r.shards)]
	rng := mrand.New(mrand.NewPCG(r.cfg.Seed, uint64(i)))
	for ctx.Err() == nil {
		lk := &r.locks[r.pick(i, rng)]
		t0 := r.now()
		lk.waiting.Add(1)
		r.waitingAll.Add(1)
		actx, cancel := context.WithTimeout(ctx, r.cfg.AcquireTimeout)
		h, err := l.Acquire(actx, lk.name)
		cancel()
		r.waitingAll.Add(-1)
		othersWaiting := lk.waiting.Add(-1) > 0
		t1 := r.now()
		if err != nil {
			if ctx.Err() != nil {
				return // the run ended while this client waited
			}
			r.fail("acquire", err)
			sleep(ctx, errorPause)
			continue
		}
		if lk.holders.Add(1) > 1 {
			r.overlaps.Add(1)
		}
		if r.inWindow(t1) {
			st.grants++
			rel, releaser := lk.lastRelease.Load(), lk.lastReleaser.Load()
			sh.mu.Lock()
			record(sh.acquire, t1-t0)
			if rel > 0 && int64(t0) <= rel {
				record(sh.handoff, t1-time.Duration(rel))
				st.handoffs++
			}
			sh.mu.Unlock()
			if rel > 0 && releaser == int64(i) && othersWaiting {
				st.retakes++
			}
		}
		if r.cfg.Hold > 0 {
			sleep(ctx, r.cfg.Hold)
		}
		lk.holders.Add(-1)
		tr := r.now()
		lk.lastReleaser.Store(int64(i))
		lk.lastRelease.Store(max(int64(tr), 1))
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.ReleaseTimeout)
		err = h.Release(rctx)
		cancel()
		t2 := r.now()
		if err != nil {
			r.fail("release", err)
			continue
		}
		r.pairsAll.Add(1)
		if r.inWindow(t2) {
			st.pairs++
			sh.mu.Lock()
			record(sh.release, t2-tr)
			sh.mu.Unlock()
		}
	}
}

// record adds d to h in microseconds, clamped to the histogram's range.
func record(h *hdrhistogram.Histogram, d time.Duration) {
	us := min(max(d.Microseconds(), histMin), histMax)
	_ = h.RecordValue(us) // cannot fail: us is in range
}

func (r *run) fail(op string, err error) {
	r.errorsAll.Add(1)
	key := op + ":" + ErrorKind(err)
	r.errMu.Lock()
	r.errCounts[key]++
	if _, ok := r.errSamples[key]; !ok {
		msg := err.Error()
		if len(msg) > 300 {
			msg = msg[:297] + "..."
		}
		r.errSamples[key] = msg
	}
	r.errMu.Unlock()
}

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func randomUint64() uint64 {
	var b [8]byte
	rand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:]) | 1
}
