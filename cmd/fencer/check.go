package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/fencerlock/fencer/internal/check"
	"github.com/fencerlock/fencer/internal/check/report"
	"github.com/fencerlock/fencer/internal/check/scenario"
	"github.com/fencerlock/fencer/internal/check/traffic"
)

const checkUsage = `Usage: fencer check [--scenario NAME|all] [--backend KIND...] [--duration D] [--seed N] [--out DIR] [--json]
       fencer check --list

Reproduces every failure scenario of the seed articles against real
processes on loopback (fencer server nodes, redis-server, PostgreSQL,
fencer store and client workers), injects the faults (pauses, kills,
failovers, clock jumps, network delays and partitions), records a history,
checks it, and says for each scenario and backend whether the expected
outcome came out: "safe" (no stale write accepted, no update lost, tokens
in order) or, where the articles say a backend breaks, the violation they
predict. A demonstration that does not reproduce fails.

Without --duration each scenario runs its short form, a few seconds each.
Progress goes to stderr; the table (or --json, one object per line) to
stdout; --out DIR gets the HTML report (index.html), results.jsonl,
porcupine's views and every run's histories and logs.

Needs redis-server, PostgreSQL and gcc (scripts/test installs them).

Examples:
  fencer check                                   every scenario, short form
  fencer check --scenario pause-33-34 --backend redlock
  fencer check --scenario soak --duration 30m --seed 42 --out soak-report

Exit status: 0 when every run came out as expected; 1 when a backend that
promises correctness violated safety, or an expected demonstration did not
reproduce, or a run could not complete; 2 for a usage error.

Flags:
`

// listFlag collects a flag given several times or as a comma list.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// checkFlags is the parsed command line of fencer check.
type checkFlags struct {
	scenarios, backends listFlag
	duration            time.Duration
	seed                uint64
	seedSet             bool
	out                 string
	json, list, verbose bool
}

// parseCheckFlags parses and validates fencer check's flags. It returns
// flag.ErrHelp for -h, and an error saying what is wrong otherwise.
func parseCheckFlags(args []string, stderr io.Writer) (*checkFlags, error) {
	f := &checkFlags{}
	fs := flag.NewFlagSet("fencer check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, checkUsage)
		fs.PrintDefaults()
	}
	fs.Var(&f.scenarios, "scenario", "scenario to run, or all (repeatable, or a comma list; default all); see --list")
	fs.Var(&f.backends, "backend", "run only against this backend: fencer, postgres, redis, redlock, or a case label such as redlock-aof (repeatable, or a comma list; default all)")
	fs.DurationVar(&f.duration, "duration", 0, "how long the looping scenarios run (soak, lock server, unfenced-increments); 0 is the short form")
	seed := fs.String("seed", "", "seed of the fault schedules and random pauses (default: random, printed)")
	fs.StringVar(&f.out, "out", "", "directory for the HTML report and every run's histories and logs")
	fs.BoolVar(&f.json, "json", false, "print one JSON object per scenario and backend instead of the table")
	fs.BoolVar(&f.list, "list", false, "list the scenarios and their expected outcomes per backend, and exit")
	fs.BoolVar(&f.verbose, "v", false, "log every process start and fault to stderr")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, printedError{err} // package flag has printed it
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q; fencer check takes flags only", fs.Arg(0))
	}
	if *seed != "" {
		v, err := parseUint(*seed)
		if err != nil {
			return nil, fmt.Errorf("--seed %q is not a number from 0 to 18446744073709551615", *seed)
		}
		f.seed, f.seedSet = v, true
	}
	if f.duration != 0 && (f.duration < time.Second || f.duration > check.MaxDuration) {
		return nil, fmt.Errorf("--duration %v is out of range; accepted: 1s to %v (leave it out for the short form)", f.duration, check.MaxDuration)
	}
	if _, err := check.Plan(f.scenarios, f.backends); err != nil {
		return nil, err
	}
	return f, nil
}

func parseUint(s string) (uint64, error) {
	var v uint64
	_, err := fmt.Sscan(s, &v)
	if err != nil || fmt.Sprint(v) != strings.TrimLeft(s, "+") {
		return 0, errors.New("not a number")
	}
	return v, nil
}

func checkCommand(ctx context.Context, env *environment, args []string) int {
	f, err := parseCheckFlags(args, env.stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		if !errors.As(err, new(printedError)) {
			fmt.Fprintf(env.stderr, "fencer check: %v\n", err)
		}
		fmt.Fprintln(env.stderr, "Run 'fencer check --help' for usage.")
		return exitUsage
	}
	if f.list {
		if err := writeScenarioList(env.stdout, f.scenarios, f.backends); err != nil {
			fmt.Fprintf(env.stderr, "fencer check: %v\n", err)
			return exitFailure
		}
		return exitOK
	}
	if !f.seedSet {
		var b [8]byte
		_, _ = rand.Read(b[:])
		f.seed = binary.LittleEndian.Uint64(b[:]) >> 1
	}
	binPath, err := os.Executable()
	if err != nil {
		fmt.Fprintf(env.stderr, "fencer check: find the fencer binary to run the servers and workers with: %v\n", err)
		return exitFailure
	}
	runsDir, keep := "", f.out != ""
	if keep {
		runsDir = filepath.Join(f.out, "runs")
		if err := os.MkdirAll(runsDir, 0o755); err != nil {
			fmt.Fprintf(env.stderr, "fencer check: --out: %v\n", err)
			return exitFailure
		}
	} else {
		if runsDir, err = os.MkdirTemp("", "fencer-check-"); err != nil {
			fmt.Fprintf(env.stderr, "fencer check: %v\n", err)
			return exitFailure
		}
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var logger *slog.Logger
	if f.verbose {
		logger = slog.New(slog.NewTextHandler(env.stderr, nil))
	}
	fmt.Fprintf(env.stderr, "fencer check: seed %d (repeat with --seed %d)\n", f.seed, f.seed)
	start := time.Now()
	outcomes, err := check.Run(ctx, check.Options{
		Binary:    binPath,
		Scenarios: f.scenarios,
		Backends:  f.backends,
		Duration:  f.duration,
		Seed:      f.seed,
		Dir:       runsDir,
		KeepDirs:  keep,
		Progress:  env.stderr,
		Logger:    logger,
	})
	interrupted := err != nil && ctx.Err() != nil
	if err != nil && !interrupted {
		fmt.Fprintf(env.stderr, "fencer check: %v\n", err)
		return exitUsage
	}
	analyses := check.Analyses(outcomes)
	results := report.Results(analyses)
	if f.json {
		err = report.WriteJSON(env.stdout, results)
	} else {
		err = report.WriteTable(env.stdout, results)
	}
	if err != nil {
		fmt.Fprintf(env.stderr, "fencer check: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(env.stderr, "fencer check: %d run(s) in %.0fs\n", len(outcomes), time.Since(start).Seconds())
	passed := check.Passed(outcomes)
	if keep {
		files, err := report.WriteDir(f.out, analyses)
		if err != nil {
			fmt.Fprintf(env.stderr, "fencer check: %v\n", err)
			return exitFailure
		}
		fmt.Fprintf(env.stderr, "fencer check: report in %s; histories and logs in %s\n", files.Index, runsDir)
	} else if passed && !interrupted {
		os.RemoveAll(runsDir)
	} else {
		fmt.Fprintf(env.stderr, "fencer check: histories and logs kept in %s\n", runsDir)
	}
	switch {
	case interrupted:
		fmt.Fprintln(env.stderr, "fencer check: interrupted; every process it started is stopped")
		return exitFailure
	case !passed:
		return exitFailure
	}
	return exitOK
}

// printedError is an error package flag has already printed.
type printedError struct{ error }

func (e printedError) Unwrap() error { return e.error }

// writeScenarioList prints the scenarios with their expected outcomes per
// backend.
func writeScenarioList(w io.Writer, scenarios, backends []string) error {
	plan, err := check.Plan(scenarios, backends)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	var last *scenario.Scenario
	for _, p := range plan {
		if p.Scenario != last {
			if last != nil {
				fmt.Fprintln(tw)
			}
			last = p.Scenario
			fmt.Fprintf(tw, "%s\t%s\n", p.Scenario.Name, p.Scenario.Title)
			fmt.Fprintf(tw, "\tsource: %s\n", p.Scenario.Source)
		}
		fmt.Fprintf(tw, "  %s\texpected %s: %s\n", p.Case.Backend, p.Case.Expectation(), p.Case.Why)
	}
	return tw.Flush()
}

func checkWorkerCommand(ctx context.Context, env *environment, args []string) int {
	cfg, err := traffic.ParseArgs(args, env.stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintln(env.stderr, err)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := traffic.Run(ctx, cfg); err != nil {
		fmt.Fprintf(env.stderr, "fencer check-worker %s: %v\n", cfg.Name, err)
		return exitFailure
	}
	return exitOK
}

// hiddenServerFlags are fencer server's flags for the checker only, left
// out of its --help.
var hiddenServerFlags = []string{"clock-file"}

// printVisibleDefaults is fs.PrintDefaults without the hidden flags.
func printVisibleDefaults(fs *flag.FlagSet, hidden ...string) {
	out := flag.NewFlagSet(fs.Name(), flag.ContinueOnError)
	out.SetOutput(fs.Output())
	fs.VisitAll(func(f *flag.Flag) {
		for _, h := range hidden {
			if f.Name == h {
				return
			}
		}
		out.Var(f.Value, f.Name, f.Usage)
	})
	out.PrintDefaults()
}
