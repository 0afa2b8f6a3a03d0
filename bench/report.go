package bench

import (
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Report is the outcome of one Run: what was measured in its window. Its
// JSON form (encoding/json) is one flat object whose keys are the tags
// below; latencies are in milliseconds, rounded to the microsecond. A
// latency field is null when nothing was measured (hand-offs outside
// contention).
type Report struct {
	// Backend describes the lock service; Run leaves it empty for the
	// caller to fill in, with a URL free of passwords.
	Backend string `json:"backend,omitempty"`
	// Guarantee is the backend's declared guarantee, filled in by the
	// caller when it knows it.
	Guarantee string `json:"guarantee,omitempty"`

	Workload Workload `json:"workload"`
	Clients  int      `json:"clients"`
	Locks    int      `json:"locks"`
	HoldMs   float64  `json:"hold_ms"`
	WarmupS  float64  `json:"warmup_s"`
	// DurationS is the measured window in seconds: Config.Duration, or
	// less when the run was interrupted.
	DurationS   float64 `json:"duration_s"`
	Interrupted bool    `json:"interrupted"`

	// Pairs are acquire+release pairs whose release returned without error
	// in the window.
	Pairs       int64   `json:"pairs"`
	PairsPerSec float64 `json:"pairs_per_sec"`
	// Grants are acquires that returned a grant in the window.
	Grants       int64   `json:"grants"`
	GrantsPerSec float64 `json:"grants_per_sec"`

	AcquireMeanMs *float64 `json:"acquire_mean_ms"`
	AcquireP50Ms  *float64 `json:"acquire_p50_ms"`
	AcquireP90Ms  *float64 `json:"acquire_p90_ms"`
	AcquireP99Ms  *float64 `json:"acquire_p99_ms"`
	AcquireP999Ms *float64 `json:"acquire_p999_ms"`
	AcquireMaxMs  *float64 `json:"acquire_max_ms"`

	ReleaseP50Ms *float64 `json:"release_p50_ms"`
	ReleaseP99Ms *float64 `json:"release_p99_ms"`
	ReleaseMaxMs *float64 `json:"release_max_ms"`

	// Handoffs are grants to a client that was already waiting when the
	// previous holder called Release; the latencies run from that call to
	// the grant.
	Handoffs      int64    `json:"handoffs"`
	HandoffP50Ms  *float64 `json:"handoff_p50_ms"`
	HandoffP90Ms  *float64 `json:"handoff_p90_ms"`
	HandoffP99Ms  *float64 `json:"handoff_p99_ms"`
	HandoffP999Ms *float64 `json:"handoff_p999_ms"`
	HandoffMaxMs  *float64 `json:"handoff_max_ms"`
	// Retakes are grants to the client that had just released the lock
	// while others were waiting for it.
	Retakes int64 `json:"retakes"`

	// GrantsPerClient is each client's grants in the window; they sum to
	// Grants.
	GrantsPerClient []int64 `json:"grants_per_client"`
	GrantsMax       int64   `json:"grants_max_per_client"`
	GrantsMin       int64   `json:"grants_min_per_client"`
	// Fairness is GrantsMin / GrantsMax: 1 when every client got the same
	// number of grants, 0 when one got none.
	Fairness float64 `json:"fairness"`

	// Renewals are successful lease renewals in the window, from Lockers
	// that count them (RenewalCounter).
	Renewals       int64   `json:"renewals"`
	RenewalsPerSec float64 `json:"renewals_per_sec"`

	// Overlaps are grants that found the lock held by another client of
	// this run: mutual exclusion failures.
	Overlaps int64 `json:"overlaps"`

	// Errors counts errors by "op:kind" (see ErrorKind), over the whole
	// run, warm-up included; ErrorSamples holds the first message of each.
	Errors       map[string]int64  `json:"errors"`
	ErrorsTotal  int64             `json:"errors_total"`
	ErrorSamples map[string]string `json:"error_samples"`
}

func (r *run) report() *Report {
	acq, rel, hand := newHistogram(), newHistogram(), newHistogram()
	for i := range r.shards {
		acq.Merge(r.shards[i].acquire)
		rel.Merge(r.shards[i].release)
		hand.Merge(r.shards[i].handoff)
	}
	window := time.Duration(r.to.Load()) - r.from
	rep := &Report{
		Workload:        r.cfg.Workload,
		Clients:         len(r.lockers),
		Locks:           len(r.locks),
		HoldMs:          ms(r.cfg.Hold),
		WarmupS:         r.cfg.Warmup.Seconds(),
		DurationS:       window.Seconds(),
		Interrupted:     r.interrupted,
		GrantsPerClient: make([]int64, len(r.clients)),
		Overlaps:        r.overlaps.Load(),
		Renewals:        r.renewalsAt[1] - r.renewalsAt[0],
		ErrorsTotal:     r.errorsAll.Load(),
		Errors:          r.errCounts,
		ErrorSamples:    r.errSamples,
	}
	for i, c := range r.clients {
		rep.Pairs += c.pairs
		rep.Grants += c.grants
		rep.Handoffs += c.handoffs
		rep.Retakes += c.retakes
		rep.GrantsPerClient[i] = c.grants
	}
	secs := window.Seconds()
	rep.PairsPerSec = round(float64(rep.Pairs)/secs, 1)
	rep.GrantsPerSec = round(float64(rep.Grants)/secs, 1)
	rep.RenewalsPerSec = round(float64(rep.Renewals)/secs, 1)
	rep.GrantsMax = slices.Max(rep.GrantsPerClient)
	rep.GrantsMin = slices.Min(rep.GrantsPerClient)
	if rep.GrantsMax > 0 {
		rep.Fairness = round(float64(rep.GrantsMin)/float64(rep.GrantsMax), 3)
	}
	if acq.TotalCount() > 0 {
		rep.AcquireMeanMs = ptr(round(acq.Mean()/1000, 3))
		rep.AcquireP50Ms = quantile(acq, 50)
		rep.AcquireP90Ms = quantile(acq, 90)
		rep.AcquireP99Ms = quantile(acq, 99)
		rep.AcquireP999Ms = quantile(acq, 99.9)
		rep.AcquireMaxMs = usToMs(acq.Max())
	}
	if rel.TotalCount() > 0 {
		rep.ReleaseP50Ms = quantile(rel, 50)
		rep.ReleaseP99Ms = quantile(rel, 99)
		rep.ReleaseMaxMs = usToMs(rel.Max())
	}
	if hand.TotalCount() > 0 {
		rep.HandoffP50Ms = quantile(hand, 50)
		rep.HandoffP90Ms = quantile(hand, 90)
		rep.HandoffP99Ms = quantile(hand, 99)
		rep.HandoffP999Ms = quantile(hand, 99.9)
		rep.HandoffMaxMs = usToMs(hand.Max())
	}
	return rep
}

func quantile(h *hdrhistogram.Histogram, q float64) *float64 { return usToMs(h.ValueAtQuantile(q)) }

func usToMs(us int64) *float64 { return ptr(round(float64(us)/1000, 3)) }

func ms(d time.Duration) float64 { return round(float64(d)/float64(time.Millisecond), 3) }

func ptr(f float64) *float64 { return &f }

func round(f float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(f*p) / p
}

// WriteText writes the report for people, one figure a line.
func (rep *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	f := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	lat := func(p *float64) string {
		if p == nil {
			return "-"
		}
		return fmt.Sprintf("%.3fms", *p)
	}
	if rep.Backend != "" {
		g := ""
		if rep.Guarantee != "" {
			g = " (" + rep.Guarantee + ")"
		}
		f("backend      %s%s\n", rep.Backend, g)
	}
	f("workload     %s: %d clients, %d locks, hold %gms, %.1fs measured after %.1fs warm-up", rep.Workload, rep.Clients, rep.Locks, rep.HoldMs, rep.DurationS, rep.WarmupS)
	if rep.Interrupted {
		f(" (interrupted)")
	}
	f("\n")
	f("pairs        %d, %.1f/s (acquire+release)\n", rep.Pairs, rep.PairsPerSec)
	f("grants       %d, %.1f/s\n", rep.Grants, rep.GrantsPerSec)
	f("acquire      p50 %s  p90 %s  p99 %s  p99.9 %s  max %s\n", lat(rep.AcquireP50Ms), lat(rep.AcquireP90Ms), lat(rep.AcquireP99Ms), lat(rep.AcquireP999Ms), lat(rep.AcquireMaxMs))
	f("release      p50 %s  p99 %s  max %s\n", lat(rep.ReleaseP50Ms), lat(rep.ReleaseP99Ms), lat(rep.ReleaseMaxMs))
	if rep.Handoffs > 0 {
		f("hand-off     %d: p50 %s  p90 %s  p99 %s  p99.9 %s  max %s (release sent to next waiter's grant)\n", rep.Handoffs,
			lat(rep.HandoffP50Ms), lat(rep.HandoffP90Ms), lat(rep.HandoffP99Ms), lat(rep.HandoffP999Ms), lat(rep.HandoffMaxMs))
	} else {
		f("hand-off     none measured (no grant went to a client that was already waiting)\n")
	}
	f("retakes      %d (grants back to the releaser while others waited)\n", rep.Retakes)
	f("fairness     %.3f: most %d, fewest %d grants per client\n", rep.Fairness, rep.GrantsMax, rep.GrantsMin)
	f("renewals     %d, %.1f/s\n", rep.Renewals, rep.RenewalsPerSec)
	f("overlaps     %d\n", rep.Overlaps)
	if rep.ErrorsTotal == 0 {
		f("errors       none\n")
	} else {
		f("errors       %d\n", rep.ErrorsTotal)
		keys := make([]string, 0, len(rep.Errors))
		for k := range rep.Errors {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			f("  %-24s %d  e.g. %s\n", k, rep.Errors[k], rep.ErrorSamples[k])
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
