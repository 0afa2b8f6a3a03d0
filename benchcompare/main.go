package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/bench"
)

const usage = `Usage: benchcompare --fencer-bin PATH [FLAGS]

Measures fencer side by side with raw Redis, redsync, bsm/redislock, etcd
and ZooKeeper on this machine, starting every server itself on loopback,
and prints one table (and writes it to --out). Run it through
scripts/bench-compare, which installs the servers and builds the binaries.

Flags:
`

// cell is one workload every system runs.
type cell struct {
	id       string
	workload bench.Workload
	clients  int
	duration time.Duration
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == echoArg {
		os.Exit(runEcho())
	}
	os.Exit(run())
}

func run() int {
	fs := flag.NewFlagSet("benchcompare", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(os.Stderr, usage)
		fs.PrintDefaults()
	}
	fencerBin := fs.String("fencer-bin", "", "the fencer binary to run the servers with (go build ./cmd/fencer); required")
	duration := fs.Duration("duration", 8*time.Second, "measured time of the uncontended and contended cells, 1s to 1h")
	single := fs.Duration("single-duration", 3*time.Second, "measured time of the one-client cell, 1s to 1h")
	warmup := fs.Duration("warmup", time.Second, "unmeasured time before each cell, 0 to 1m")
	runs := fs.Int("runs", 1, "times to run every cell; the table shows medians, 1 to 9")
	uncontended := fs.Int("uncontended-clients", 64, "clients of the uncontended cell, each on its own lock, 1 to 1024")
	contended := fs.Int("contended-clients", 16, "clients of the contended cell, all on one lock, 2 to 1024")
	ttl := fs.Duration("ttl", fencer.DefaultTTL, "lease, expiry or session TTL of every lock, 1s to 1h")
	poll := fs.Duration("poll", 10*time.Millisecond, "retry interval of the polling locks (raw SET NX, bsm/redislock, SQL table), 1ms to 1s")
	only := fs.String("only", "", "run only the systems whose id or name matches this regular expression (ids: "+systemIDs()+")")
	out := fs.String("out", "", "write the report as Markdown to this file (e.g. docs/benchmarks.md)")
	baseDir := fs.String("dir", os.TempDir(), "directory for the servers' data (its filesystem decides what fsync costs)")
	repo := fs.String("repo", "..", "the fencer repository, for its commit in the report")
	command := fs.String("command", "", "the command line to record in the report (default: this program's)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	bad := func(format string, a ...any) int {
		fmt.Fprintf(os.Stderr, "benchcompare: "+format+"\n", a...)
		return 2
	}
	switch {
	case fs.NArg() > 0:
		return bad("unexpected argument %q; it takes flags only", fs.Arg(0))
	case *fencerBin == "":
		return bad("--fencer-bin is required: go build -o /tmp/fencer ./cmd/fencer, or run scripts/bench-compare")
	case *duration < time.Second || *duration > time.Hour:
		return bad("--duration %v out of range; accepted: 1s to 1h", *duration)
	case *single < time.Second || *single > time.Hour:
		return bad("--single-duration %v out of range; accepted: 1s to 1h", *single)
	case *warmup < 0 || *warmup > time.Minute:
		return bad("--warmup %v out of range; accepted: 0 to 1m", *warmup)
	case *runs < 1 || *runs > 9:
		return bad("--runs %d out of range; accepted: 1 to 9", *runs)
	case *uncontended < 1 || *uncontended > 1024:
		return bad("--uncontended-clients %d out of range; accepted: 1 to 1024", *uncontended)
	case *contended < 2 || *contended > 1024:
		return bad("--contended-clients %d out of range; accepted: 2 to 1024", *contended)
	case *ttl < time.Second || *ttl > time.Hour:
		return bad("--ttl %v out of range; accepted: 1s to 1h", *ttl)
	case *poll < time.Millisecond || *poll > time.Second:
		return bad("--poll %v out of range; accepted: 1ms to 1s", *poll)
	}
	if _, err := os.Stat(*fencerBin); err != nil {
		return bad("--fencer-bin: %v; build it with go build -o PATH ./cmd/fencer", err)
	}
	if *out != "" {
		// Fail now, not after the whole run, if the report cannot be written.
		if err := checkWritable(*out); err != nil {
			return bad("--out %s: %v", *out, err)
		}
	}
	var filter *regexp.Regexp
	if *only != "" {
		var err error
		if filter, err = regexp.Compile(*only); err != nil {
			return bad("--only: %v; accepted: a Go regular expression matching ids (%s) or names", err, systemIDs())
		}
	}
	cmdline := *command
	if cmdline == "" {
		cmdline = strings.Join(os.Args, " ")
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	c := &comparison{
		opts:  options{ttl: *ttl, poll: *poll},
		runs:  *runs,
		warm:  *warmup,
		repo:  *repo,
		cmd:   cmdline,
		start: time.Now(),
		cells: []cell{
			{"uncontended", bench.Uncontended, *uncontended, *duration},
			{"contended", bench.Contended, *contended, *duration},
			{"single", bench.Uncontended, 1, *single},
		},
		results: map[string]map[string]*cellResult{},
	}
	for _, s := range systems() {
		if filter == nil || filter.MatchString(s.id) || filter.MatchString(s.name) {
			c.systems = append(c.systems, s)
		}
	}
	if len(c.systems) == 0 {
		return bad("--only %q matches no system; ids: %s", *only, systemIDs())
	}

	e, err := newEnv(*baseDir, *fencerBin, logf)
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchcompare: %v\n", err)
		return 1
	}
	defer e.close()
	c.env = e
	c.machine = describeMachine(e.dir)
	if err := c.measure(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "benchcompare: %v\n", err)
		if ctx.Err() != nil {
			fmt.Fprintln(os.Stderr, "benchcompare: interrupted; every server it started has been stopped")
		}
		return 1
	}
	c.loadEnd = loadAverage()
	c.end = time.Now()
	fmt.Println()
	fmt.Print(c.textTable())
	fmt.Println()
	fmt.Print(c.textTargets())
	if *out != "" {
		if err := os.WriteFile(*out, []byte(c.markdown()), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "benchcompare: write %s: %v\n", *out, err)
			return 1
		}
		fmt.Fprintf(os.Stderr, "benchcompare: wrote %s\n", *out)
	}
	return 0
}

// checkWritable makes sure the directory of path exists and takes a file.
func checkWritable(path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".benchcompare-*")
	if err != nil {
		return err
	}
	f.Close()
	return os.Remove(f.Name())
}

func logf(format string, a ...any) { fmt.Fprintf(os.Stderr, format+"\n", a...) }

func systemIDs() string {
	var ids []string
	for _, s := range systems() {
		ids = append(ids, s.id)
	}
	return strings.Join(ids, ", ")
}

// comparison is one whole run of benchcompare.
type comparison struct {
	env     *env
	opts    options
	runs    int
	warm    time.Duration
	repo    string
	cmd     string
	cells   []cell
	systems []system

	machine    machine
	floor      floor
	start, end time.Time
	loadEnd    string
	commit     string
	// results[system id][cell id]
	results map[string]map[string]*cellResult
}

// cellResult is one system's reports for one cell, one per run, and the
// errors of runs that produced none.
type cellResult struct {
	reports []*bench.Report
	failure []string
}

func (c *comparison) result(sys, cellID string) *cellResult {
	if c.results[sys] == nil {
		c.results[sys] = map[string]*cellResult{}
	}
	r := c.results[sys][cellID]
	if r == nil {
		r = &cellResult{}
		c.results[sys][cellID] = r
	}
	return r
}

// measure measures the floor, starts the services, and runs every cell of
// every system, run after run.
func (c *comparison) measure(ctx context.Context) error {
	c.commit = gitCommit(c.repo)
	logf("benchcompare: measuring the floor (fdatasync in %s, loopback round trip)", c.env.dir)
	var err error
	if c.floor, err = measureFloor(ctx, c.env.dir); err != nil {
		return err
	}
	logf("benchcompare: fdatasync p50 %v p99 %v; loopback round trip p50 %v p99 %v",
		c.floor.FsyncP50.Round(time.Microsecond), c.floor.FsyncP99.Round(time.Microsecond),
		c.floor.RTTP50.Round(time.Microsecond), c.floor.RTTP99.Round(time.Microsecond))
	var services []string
	for _, s := range c.systems {
		if s.skip == "" {
			services = append(services, s.services...)
		}
	}
	if err := c.env.start(ctx, services); err != nil {
		return err
	}
	for run := 1; run <= c.runs; run++ {
		for _, s := range c.systems {
			if s.skip != "" {
				if run == 1 {
					logf("benchcompare: %s: %s", s.name, s.skip)
				}
				continue
			}
			open := s.open(c.env, c.opts)
			for _, cl := range c.cells {
				if err := ctx.Err(); err != nil {
					return err
				}
				rep, err := c.runCell(ctx, open, cl)
				r := c.result(s.id, cl.id)
				if err != nil {
					if ctx.Err() != nil {
						return err
					}
					r.failure = append(r.failure, err.Error())
					logf("benchcompare: run %d/%d %-28s %-11s FAILED: %v", run, c.runs, s.name, cl.id, err)
					continue
				}
				r.reports = append(r.reports, rep)
				logf("benchcompare: run %d/%d %-28s %-11s %9.0f pairs/s  acquire p50 %s p99 %s  hand-off p50 %s  errors %d",
					run, c.runs, s.name, cl.id, rep.PairsPerSec, fmtMs(rep.AcquireP50Ms), fmtMs(rep.AcquireP99Ms), fmtMs(rep.HandoffP50Ms), rep.ErrorsTotal)
			}
		}
	}
	return nil
}

// runCell opens the cell's clients, runs the workload and closes them.
func (c *comparison) runCell(ctx context.Context, open func(context.Context, int) (*lockerSet, error), cl cell) (rep *bench.Report, err error) {
	octx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	set, err := open(octx, cl.clients)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("open %d clients: %w", cl.clients, err)
	}
	defer func() {
		if cerr := set.close(); cerr != nil && err == nil {
			logf("benchcompare: closing the clients: %v", cerr)
		}
	}()
	rep, err = bench.Run(ctx, bench.Config{
		Workload:       cl.workload,
		Duration:       cl.duration,
		Warmup:         c.warm,
		AcquireTimeout: 30 * time.Second,
	}, set.lockers)
	if err != nil {
		return nil, err
	}
	if rep.Interrupted {
		return nil, fmt.Errorf("interrupted: %w", ctx.Err())
	}
	return rep, nil
}

// gitCommit returns the repository's commit and the paths changed or added
// since, with read-only git commands; "unknown" without git.
func gitCommit(repo string) string {
	out, err := exec.Command("git", "-C", repo, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	commit := strings.TrimSpace(string(out))
	st, err := exec.Command("git", "-C", repo, "status", "--porcelain").Output()
	if err != nil {
		return commit
	}
	var changed []string
	for _, l := range strings.Split(string(st), "\n") {
		if len(l) > 3 { // "XY path"
			changed = append(changed, strings.TrimSpace(l[3:]))
		}
	}
	if len(changed) > 0 {
		commit += " plus uncommitted changes to " + strings.Join(changed, ", ")
	}
	return commit
}
