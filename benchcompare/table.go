package main

import (
	"fmt"

	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/fencerlock/fencer/bench"
)

// metric picks one figure from a report; nil when the report has none.
type metric func(*bench.Report) *float64

func val(f float64) *float64 { return &f }

var (
	pairsPerSec  metric = func(r *bench.Report) *float64 { return val(r.PairsPerSec) }
	grantsPerSec metric = func(r *bench.Report) *float64 { return val(r.GrantsPerSec) }
	acquireP50   metric = func(r *bench.Report) *float64 { return r.AcquireP50Ms }
	acquireP99   metric = func(r *bench.Report) *float64 { return r.AcquireP99Ms }
	handoffP50   metric = func(r *bench.Report) *float64 { return r.HandoffP50Ms }
	handoffP99   metric = func(r *bench.Report) *float64 { return r.HandoffP99Ms }
	grantsMin    metric = func(r *bench.Report) *float64 { return val(float64(r.GrantsMin)) }
	grantsMax    metric = func(r *bench.Report) *float64 { return val(float64(r.GrantsMax)) }
	retakeShare  metric = func(r *bench.Report) *float64 {
		if r.Grants == 0 {
			return nil
		}
		return val(100 * float64(r.Retakes) / float64(r.Grants))
	}
)

// med returns the median of a metric over a system's runs of a cell, or
// nil if no run measured it.
func (c *comparison) med(sys, cellID string, m metric) *float64 {
	r := c.results[sys][cellID]
	if r == nil {
		return nil
	}
	var vs []float64
	for _, rep := range r.reports {
		if v := m(rep); v != nil {
			vs = append(vs, *v)
		}
	}
	if len(vs) == 0 {
		return nil
	}
	sort.Float64s(vs)
	n := len(vs)
	if n%2 == 1 {
		return val(vs[n/2])
	}
	return val((vs[n/2-1] + vs[n/2]) / 2)
}

func fmtMs(p *float64) string {
	if p == nil {
		return "—"
	}
	v := *p
	switch {
	case v < 1:
		return fmt.Sprintf("%.3f", v)
	case v < 10:
		return fmt.Sprintf("%.2f", v)
	case v < 100:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

func fmtRate(p *float64) string {
	if p == nil {
		return "—"
	}
	return fmt.Sprintf("%.0f", *p)
}

func fmtRatio(a, b *float64) string {
	if a == nil || b == nil || *b == 0 {
		return "—"
	}
	r := *a / *b
	if r < 10 {
		return fmt.Sprintf("%.2f×", r)
	}
	return fmt.Sprintf("%.0f×", r)
}

// errorsOf sums a system's errors and overlaps over every cell and run.
func (c *comparison) errorsOf(sys string) (errs, overlaps int64, failed int) {
	for _, r := range c.results[sys] {
		for _, rep := range r.reports {
			errs += rep.ErrorsTotal
			overlaps += rep.Overlaps
		}
		failed += len(r.failure)
	}
	return
}

var header = []string{
	"lock", "store",
	"U pairs/s", "U ×srv3", "U ×srv1", "U acq p50", "U acq p99",
	"C grants/s", "C ×srv3", "C ×srv1", "C hand-off p50", "C hand-off p99", "C acq p99", "C fewest/most", "C retakes",
	"1c acq p50", "errors",
}

// rows returns the table's cells, one row per system.
func (c *comparison) rows() [][]string {
	const u, k, one = "uncontended", "contended", "single"
	var rows [][]string
	for _, s := range c.systems {
		if s.skip != "" {
			row := []string{s.name, s.store}
			for range len(header) - 3 {
				row = append(row, "—")
			}
			rows = append(rows, append(row, "not run"))
			continue
		}
		up, cg := c.med(s.id, u, pairsPerSec), c.med(s.id, k, grantsPerSec)
		fair := "—"
		if lo, hi := c.med(s.id, k, grantsMin), c.med(s.id, k, grantsMax); lo != nil && hi != nil {
			fair = fmt.Sprintf("%.0f/%.0f", *lo, *hi)
		}
		retakes := "—"
		if v := c.med(s.id, k, retakeShare); v != nil {
			retakes = fmt.Sprintf("%.0f%%", *v)
		}
		errs, overlaps, failed := c.errorsOf(s.id)
		e := fmt.Sprint(errs)
		if overlaps > 0 {
			e += fmt.Sprintf(", %d OVERLAPS", overlaps)
		}
		if failed > 0 {
			e += fmt.Sprintf(", %d cells failed", failed)
		}
		rows = append(rows, []string{
			s.name, s.store,
			fmtRate(up), fmtRatio(up, c.med("fencer3", u, pairsPerSec)), fmtRatio(up, c.med("fencer1", u, pairsPerSec)),
			fmtMs(c.med(s.id, u, acquireP50)), fmtMs(c.med(s.id, u, acquireP99)),
			fmtRate(cg), fmtRatio(cg, c.med("fencer3", k, grantsPerSec)), fmtRatio(cg, c.med("fencer1", k, grantsPerSec)),
			fmtMs(c.med(s.id, k, handoffP50)), fmtMs(c.med(s.id, k, handoffP99)), fmtMs(c.med(s.id, k, acquireP99)),
			fair, retakes,
			fmtMs(c.med(s.id, one, acquireP50)), e,
		})
	}
	return rows
}

func (c *comparison) legend() string {
	u, k := c.cells[0], c.cells[1]
	return fmt.Sprintf(`U = uncontended: %d clients, each acquiring and releasing a lock of its own. C = contended: %d clients
on one lock, blocking acquire. 1c = one client, uncontended. Latencies in ms; medians of %d run(s), each cell
%v measured after %v of warm-up (1c: %v). ×srv3 / ×srv1 = ratio to fencer server ×3 / ×1 in the same column.
hand-off = from the holder's call to Release to the next waiter's grant. fewest/most = grants per client.
retakes = share of grants that went back to the client that had just released while others waited.
errors = all errors over every cell and run (see "Errors").
`, u.clients, k.clients, c.runs, u.duration, c.warm, c.cells[2].duration)
}

func (c *comparison) textTable() string {
	rows := c.rows()
	widths := make([]int, len(header))
	for i, h := range header {
		widths[i] = len([]rune(h))
	}
	for _, r := range rows {
		for i, v := range r {
			widths[i] = max(widths[i], len([]rune(v)))
		}
	}
	var b strings.Builder
	line := func(cells []string) {
		for i, v := range cells {
			pad := widths[i] - len([]rune(v))
			if i < 2 {
				b.WriteString(v + strings.Repeat(" ", pad))
			} else {
				b.WriteString(strings.Repeat(" ", pad) + v)
			}
			if i < len(cells)-1 {
				b.WriteString("  ")
			}
		}
		b.WriteString("\n")
	}
	line(header)
	for _, r := range rows {
		line(r)
	}
	b.WriteString("\n" + c.legend())
	b.WriteString(fmt.Sprintf("\nfloor: fdatasync of an appended 4 KiB block p50 %v (p99 %v); loopback round trip p50 %v (p99 %v)\n",
		c.floor.FsyncP50.Round(time.Microsecond), c.floor.FsyncP99.Round(time.Microsecond),
		c.floor.RTTP50.Round(time.Microsecond), c.floor.RTTP99.Round(time.Microsecond)))
	return b.String()
}

// target is one of the goals of issue 6, checked against this run.
type target struct {
	goal, measured, verdict string
}

func verdict(ok bool, known bool) string {
	switch {
	case !known:
		return "not measured"
	case ok:
		return "met"
	}
	return "missed"
}

func (c *comparison) targets() []target {
	const u, k, one = "uncontended", "contended", "single"
	var ts []target
	ratioTarget := func(goal, a, b, cellID string, m metric, want float64, what string) {
		x, y := c.med(a, cellID, m), c.med(b, cellID, m)
		if x == nil || y == nil {
			ts = append(ts, target{goal, "—", verdict(false, false)})
			return
		}
		r := *x / *y
		ts = append(ts, target{goal, fmt.Sprintf("%.0f vs %.0f %s: %.2f×", *x, *y, what, r), verdict(r >= want, true)})
	}
	ratioTarget("fencer ×3, 64 clients: ≥ 10× etcd ×3's pairs/s", "fencer3", "etcd3", u, pairsPerSec, 10, "pairs/s")
	ratioTarget("fencer ×3, 64 clients: ≥ 0.5× raw Redis SET NX's pairs/s", "fencer3", "raw-redis", u, pairsPerSec, 0.5, "pairs/s")
	floorMs := 2 * float64(c.floor.FsyncP50+2*c.floor.RTTP50) / float64(time.Millisecond)
	if p := c.med("fencer3", one, acquireP50); p != nil {
		ts = append(ts, target{"fencer ×3, one client: acquire p50 < 2 × (fsync + 2 round trips)",
			fmt.Sprintf("%.3f ms vs %.3f ms", *p, floorMs), verdict(*p < floorMs, true)})
	} else {
		ts = append(ts, target{"fencer ×3, one client: acquire p50 < 2 × (fsync + 2 round trips)", "—", verdict(false, false)})
	}
	ratioTarget("fencer ×1, 64 clients: ≥ Redis appendfsync always (raw SET NX)", "fencer1", "raw-redis-aof", u, pairsPerSec, 1, "pairs/s")
	if p := c.med("fencer1", k, handoffP50); p != nil {
		ts = append(ts, target{"fencer ×1, contended: hand-off p50 < 1 ms", fmt.Sprintf("%.3f ms", *p), verdict(*p < 1, true)})
	} else {
		ts = append(ts, target{"fencer ×1, contended: hand-off p50 < 1 ms", "—", verdict(false, false)})
	}
	ratioTarget("fencer ×1, contended: ≥ 3× ZooKeeper's grants/s", "fencer1", "zk1", k, grantsPerSec, 3, "grants/s")
	for _, id := range []string{"fencer1", "fencer3"} {
		lo, hi := c.med(id, k, grantsMin), c.med(id, k, grantsMax)
		goal := fmt.Sprintf("fencer %s, contended: strict FIFO (fewest ≥ 90%% of most grants per client)", strings.TrimPrefix(id, "fencer")+"-node")
		if lo == nil || hi == nil || *hi == 0 {
			ts = append(ts, target{goal, "—", verdict(false, false)})
			continue
		}
		ts = append(ts, target{goal, fmt.Sprintf("%.0f / %.0f", *lo, *hi), verdict(*lo >= 0.9**hi, true)})
	}
	ratioTarget("fencer redis (with tokens): ≥ 0.9× bsm/redislock's pairs/s", "fencer-redis", "bsm", u, pairsPerSec, 0.9, "pairs/s")
	ratioTarget("fencer redlock ×3: ≥ redsync Redlock ×3's pairs/s", "fencer-redlock3", "redsync3", u, pairsPerSec, 1, "pairs/s")
	ratioTarget("fencer redlock ×5: ≥ redsync Redlock ×5's pairs/s", "fencer-redlock5", "redsync5", u, pairsPerSec, 1, "pairs/s")
	ts = append(ts, target{"server memory per held lock and session, flat acquire cost from 1k to 1M held locks",
		"not measured by this comparison", "not measured"})
	return ts
}

func (c *comparison) textTargets() string {
	var b strings.Builder
	b.WriteString("targets of issue 6:\n")
	for _, t := range c.targets() {
		fmt.Fprintf(&b, "  %-12s %-80s %s\n", t.verdict, t.goal, t.measured)
	}
	return b.String()
}

// libraryVersions returns the versions of the peer libraries this binary
// was built with.
func libraryVersions() []string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return nil
	}
	want := []string{"github.com/redis/go-redis/v9", "github.com/go-redsync/redsync/v4", "github.com/bsm/redislock",
		"go.etcd.io/etcd/client/v3", "github.com/go-zookeeper/zk", "github.com/jackc/pgx/v5"}
	var out []string
	for _, d := range bi.Deps {
		if slices.Contains(want, d.Path) {
			out = append(out, d.Path+" "+d.Version)
		}
	}
	sort.Strings(out)
	return out
}

func (c *comparison) markdown() string {
	var b strings.Builder
	f := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	f("# fencer benchmarks\n\n")
	f("Generated by `scripts/bench-compare` (the `benchcompare` module) on %s. Do not edit the figures by hand: run the\n", c.start.UTC().Format("2006-01-02"))
	f("script again, which installs the servers it needs, starts each on loopback ports in a temporary directory,\n")
	f("measures every lock with the same driver (package `bench`, as `fencer bench` does), and stops everything.\n\n")
	f("- **Command:** `%s`\n", c.cmd)
	f("- **When:** %s to %s UTC; %d run(s) of every cell, medians shown\n", c.start.UTC().Format("2006-01-02 15:04"), c.end.UTC().Format("15:04"), c.runs)
	f("- **Machine:** %s, %d cores, %s memory; %s, kernel %s; %s\n", c.machine.CPU, c.machine.Cores, c.machine.Memory, c.machine.OS, c.machine.Kernel, c.machine.Go)
	f("- **Data directories:** %s. Load average at the start %s, at the end %s: this machine is shared, and\n", c.machine.FS, c.machine.Load, c.loadEnd)
	f("  other work ran during the measurement, so single figures can move by tens of percent between runs.\n")
	f("- **Client and servers share the machine's %d cores**: the driver's clients take CPU from the servers.\n", c.machine.Cores)
	f("- **fencer:** commit %s, `fencer server` processes with fsync on.\n", c.commit)
	var vs []string
	for _, k := range []string{"redis", "postgres", "etcd", "zookeeper"} {
		if v, ok := c.env.versions[k]; ok {
			vs = append(vs, v)
		}
	}
	if len(vs) > 0 {
		f("- **Servers:** %s.\n", strings.Join(vs, "; "))
	}
	if libs := libraryVersions(); len(libs) > 0 {
		f("- **Libraries:** %s.\n", strings.Join(libs, ", "))
	}
	f("\n## The physical floor\n\n")
	f("| what | p50 | p99 |\n| --- | ---: | ---: |\n")
	f("| fdatasync of an appended 4 KiB block (in the data directory) | %v | %v |\n", c.floor.FsyncP50.Round(time.Microsecond), c.floor.FsyncP99.Round(time.Microsecond))
	f("| loopback TCP round trip between two processes (1 byte) | %v | %v |\n", c.floor.RTTP50.Round(time.Microsecond), c.floor.RTTP99.Round(time.Microsecond))
	fl := c.floor.FsyncP50 + 2*c.floor.RTTP50
	f("\nA durable, replicated grant cannot take less than about one fsync plus two round trips: %v here. Throughput\n", fl.Round(time.Microsecond))
	f("beyond 1/fsync (%.0f/s) comes only from putting many grants into each fsync.\n", float64(time.Second)/float64(c.floor.FsyncP50))

	f("\n## Results\n\n")
	f("| %s |\n|", strings.Join(header, " | "))
	for i := range header {
		if i < 2 {
			f(" --- |")
		} else {
			f(" ---: |")
		}
	}
	f("\n")
	for _, r := range c.rows() {
		f("| %s |\n", strings.Join(r, " | "))
	}
	f("\n%s", strings.ReplaceAll(c.legend(), "\n", "\n"))
	for _, s := range c.systems {
		if s.skip != "" {
			f("\n%s: %s.\n", s.name, s.skip)
		}
	}

	f("\n## Targets of issue 6\n\n| goal | measured | |\n| --- | --- | --- |\n")
	for _, t := range c.targets() {
		f("| %s | %s | %s |\n", t.goal, t.measured, t.verdict)
	}

	f("\n## How each lock is driven\n\n")
	f("Each benchmark client is its own client object with its own connections, as separate processes would be\n")
	f("(`fencer bench --shared` measures one shared client instead). Every lock uses the same TTL, %v (lease, key\n", c.opts.ttl)
	f("expiry or session timeout), long enough that no lease expires during a run, so renewals play no part here.\n")
	f("Every acquire is the blocking one: what users call, and the only one a ZooKeeper recipe or etcd's Mutex has.\n\n")
	f("- **fencer server / redis / redlock:** `fencer.Client.Acquire` and `Lease.Release` over `backends.Open`. The server\n")
	f("  queues waiters and pushes each grant; the redis backends wake waiters by pub/sub. Every grant carries a token.\n")
	f("- **raw SET NX + Lua:** go-redis `SET key value NX PX ttl`, release by a compare-and-delete script, retry every %v\n", c.opts.poll)
	f("  while held. No token, no renewal: the least a Redis lock does.\n")
	f("- **raw SQL lock table:** one row per held lock: an `INSERT ... ON CONFLICT DO UPDATE ... WHERE expired` to acquire\n")
	f("  and a `DELETE` by owner to release, each its own fsync'd commit; retry every %v while held. The floor of a\n", c.opts.poll)
	f("  PostgreSQL lock that needs no session.\n")
	f("- **redsync:** `NewMutex(name, WithExpiry(ttl), WithTries(MaxInt32)).LockContext`, with redsync's default retry\n")
	f("  delay (random 50–250 ms); one pool per node; Redlock on 3 and 5 masters.\n")
	f("- **bsm/redislock:** `Obtain` with `LinearBackoff(%v)` (the library retries nothing by default).\n", c.opts.poll)
	f("- **etcd:** `concurrency.NewMutex(session, \"/\"+name).Lock` / `Unlock`, one `concurrency.Session` (a lease kept\n")
	f("  alive) per client.\n")
	f("- **ZooKeeper:** go-zookeeper `zk.NewLock(conn, \"/\"+name, WorldACL).Lock` / `Unlock`: an ephemeral sequential\n")
	f("  node, each waiter watching its predecessor; one session per client.\n\n")
	f("What the driver measures, exactly (from the `bench` package): acquire latency runs from the call to its return\n")
	f("with a grant, so under contention it includes queueing; a pair is an acquire and a release that returned without\n")
	f("error; a hand-off runs from the moment the holder called Release (\"release sent\", in this process) to the moment\n")
	f("the next holder's Acquire returned, counted only for a client that was already waiting when that release began.\n")

	f("\n## Errors\n\n")
	anyErr := false
	for _, s := range c.systems {
		for _, cl := range c.cells {
			r := c.results[s.id][cl.id]
			if r == nil {
				continue
			}
			for _, fail := range r.failure {
				anyErr = true
				f("- %s, %s: cell failed: %s\n", s.name, cl.id, oneLine(fail))
			}
			counts := map[string]int64{}
			samples := map[string]string{}
			for _, rep := range r.reports {
				for k, n := range rep.Errors {
					counts[k] += n
					if _, ok := samples[k]; !ok {
						samples[k] = rep.ErrorSamples[k]
					}
				}
				if rep.Overlaps > 0 {
					counts["overlap (two holders at once)"] += rep.Overlaps
				}
			}
			keys := make([]string, 0, len(counts))
			for k := range counts {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				anyErr = true
				f("- %s, %s: %d × %s", s.name, cl.id, counts[k], k)
				if samples[k] != "" {
					f(", e.g. `%s`", oneLine(samples[k]))
				}
				f("\n")
			}
		}
	}
	if !anyErr {
		f("None.\n")
	}

	f("\n## Every run\n\nUncontended pairs/s, contended grants/s and one-client acquire p50 (ms) of each run, to show the spread. A —\nmeans that run measured no grant at all in that cell: one operation stalled for longer than the cell.\n\n")
	f("| lock | U pairs/s | C grants/s | 1c acq p50 |\n| --- | --- | --- | --- |\n")
	for _, s := range c.systems {
		if s.skip != "" {
			continue
		}
		f("| %s | %s | %s | %s |\n", s.name,
			c.perRun(s.id, "uncontended", pairsPerSec, fmtRate),
			c.perRun(s.id, "contended", grantsPerSec, fmtRate),
			c.perRun(s.id, "single", acquireP50, fmtMs))
	}
	return b.String()
}

func (c *comparison) perRun(sys, cellID string, m metric, format func(*float64) string) string {
	r := c.results[sys][cellID]
	if r == nil {
		return "—"
	}
	var vs []string
	for _, rep := range r.reports {
		vs = append(vs, format(m(rep)))
	}
	for range r.failure {
		vs = append(vs, "failed")
	}
	return strings.Join(vs, ", ")
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	s = strings.ReplaceAll(s, "`", "'")
	if len(s) > 240 {
		s = s[:237] + "..."
	}
	return s
}
