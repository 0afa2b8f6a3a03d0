package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/backends"
	"github.com/fencerlock/fencer/bench"
)

const benchUsage = `Usage: fencer bench [--backend URL] [--workload uncontended|contended|mixed]
                    [--clients N] [--locks K] [--duration D] [--warmup D] [--hold D]
                    [--ttl D] [--shared] [--json] [--cpuprofile FILE]

Measures a lock backend through fencer's public API: acquire+release pairs
per second, acquire latency percentiles, hand-off latency from a release to
the next waiter's grant, grants per second, fairness, renewals and errors.

Workloads:
  uncontended  each client acquires and releases a lock of its own
  contended    every client acquires the same lock (blocking)
  mixed        K locks shared by all clients, one picked at random each time

Each client is its own fencer.Client over its own backend connection, as
separate processes would be; --shared makes all clients share one. Leases
are renewed every ttl/3 while held: use --ttl and --hold to exercise
renewals (e.g. --ttl 300ms --hold 200ms).

Progress goes to stderr once a second. The report goes to stdout, as text
or, with --json, as one JSON object (latencies in milliseconds).

Backend URLs (--backend, else FENCER_BACKEND, else fencer://127.0.0.1:7700):
  fencer://host:port[,host:port...]   the fencer server (correctness)
  redis://[user:password@]host:port[/db]
  redlock://host1:port1,host2:port2,host3:port3

Exit status: 0 when the run completed; 1 if the backend could not be used,
no pair completed, or two clients held a lock at once; 2 for a usage error.

Flags:
`

func benchCommand(ctx context.Context, env *environment, args []string) int {
	fs := flag.NewFlagSet("fencer bench", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	fs.Usage = func() {
		fmt.Fprint(env.stderr, benchUsage)
		fs.PrintDefaults()
	}
	backendURL := fs.String("backend", "", "backend URL; default $FENCER_BACKEND, else "+backends.DefaultURL)
	workload := fs.String("workload", string(bench.Uncontended), "uncontended, contended or mixed")
	clients := fs.Int("clients", 16, "number of clients, 1 to 4096")
	locks := fs.Int("locks", 0, "number of locks of the mixed workload, 1 to 1048576 (default a quarter of the clients)")
	duration := fs.Duration("duration", 10*time.Second, "measured time, 100ms to 24h")
	warmup := fs.Duration("warmup", time.Second, "unmeasured time before it, 0 to 1h")
	hold := fs.Duration("hold", 0, "how long each grant is held before release, 0 to 1h")
	ttl := fs.Duration("ttl", fencer.DefaultTTL, "lease time to live, 10ms to 24h; renewed every ttl/3")
	acquireTimeout := fs.Duration("acquire-timeout", 30*time.Second, "limit of each acquire; one that runs out counts as an error, 1ms to 24h")
	shared := fs.Bool("shared", false, "all clients share one fencer.Client and backend connection")
	asJSON := fs.Bool("json", false, "print the report as one JSON object")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of this process (the clients) over the whole run to this file")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(env.stderr, "fencer bench: "+format+"\n", a...)
		fmt.Fprintln(env.stderr, "Run 'fencer bench --help' for usage.")
		return exitUsage
	}
	if fs.NArg() > 0 {
		return usageErr("unexpected argument %q; it takes flags only", fs.Arg(0))
	}
	w, err := bench.ParseWorkload(*workload)
	if err != nil {
		return usageErr("--workload: %v", err)
	}
	if *acquireTimeout < time.Millisecond || *acquireTimeout > bench.MaxDuration {
		return usageErr("--acquire-timeout %v is out of range; accepted: 1ms to 24h", *acquireTimeout)
	}
	if err := fencer.ValidateTTL(*ttl); err != nil {
		return usageErr("--ttl: %v", err)
	}
	cfg := bench.Config{
		Workload:       w,
		Locks:          *locks,
		Duration:       *duration,
		Warmup:         *warmup,
		Hold:           *hold,
		AcquireTimeout: *acquireTimeout,
	}
	if err := cfg.Validate(*clients); err != nil {
		return usageErr("%v", flagNames(err))
	}
	url := *backendURL
	if url == "" {
		url = env.getenv("FENCER_BACKEND")
	}
	if url == "" {
		url = backends.DefaultURL
	}

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	set, err := bench.OpenFencer(ctx, url, *clients, *shared, &fencer.Options{TTL: *ttl})
	if err != nil {
		if errors.Is(err, fencer.ErrInvalid) {
			return usageErr("--backend: %v", err)
		}
		fmt.Fprintf(env.stderr, "fencer bench: %v\n", err)
		return exitFailure
	}
	defer func() {
		if err := set.Close(); err != nil {
			fmt.Fprintf(env.stderr, "fencer bench: closing the clients: %v\n", err)
		}
	}()
	shown := redactURL(url)
	if err := preflight(ctx, set.Lockers[0]); err != nil {
		fmt.Fprintf(env.stderr, "fencer bench: cannot take and release a lock on %s: %v\n"+
			"Check --backend, and that the server is running (fencer server starts the default one).\n", shown, err)
		return exitFailure
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintf(env.stderr, "fencer bench: --cpuprofile: %v\n", err)
			return exitUsage
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(env.stderr, "fencer bench: --cpuprofile: %v\n", err)
			return exitFailure
		}
		defer pprof.StopCPUProfile()
	}
	cfg.Progress = func(p bench.Progress) {
		phase := "measuring"
		if !p.Measuring {
			phase = "warm-up"
		}
		fmt.Fprintf(env.stderr, "fencer bench: %4.0fs %-9s %9.0f pairs/s  %d errors  %d waiting\n",
			p.Elapsed.Seconds(), phase, p.PairsPerSec, p.Errors, p.Waiting)
	}
	rep, err := bench.Run(ctx, cfg, set.Lockers)
	if err != nil {
		fmt.Fprintf(env.stderr, "fencer bench: %v\n", err)
		return exitFailure
	}
	rep.Backend = shown
	rep.Guarantee = set.Info.Guarantee.String()
	if *asJSON {
		enc := json.NewEncoder(env.stdout)
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintf(env.stderr, "fencer bench: %v\n", err)
			return exitFailure
		}
	} else if err := rep.WriteText(env.stdout); err != nil {
		fmt.Fprintf(env.stderr, "fencer bench: %v\n", err)
		return exitFailure
	}
	switch {
	case rep.Overlaps > 0:
		fmt.Fprintf(env.stderr, "fencer bench: %d grants found their lock held by another client: mutual exclusion failed\n", rep.Overlaps)
		return exitFailure
	case rep.Pairs == 0:
		fmt.Fprintln(env.stderr, "fencer bench: no acquire+release pair completed in the measured time; see the errors above")
		return exitFailure
	}
	return exitOK
}

// preflight takes and releases one lock, so that a wrong URL or a server
// that is down fails at once with its own error instead of as a run full
// of errors.
func preflight(ctx context.Context, l bench.Locker) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	h, err := l.Acquire(ctx, "bench/preflight")
	if err != nil {
		return err
	}
	return h.Release(ctx)
}

// flagNames puts the flag names into the bench package's field names.
func flagNames(err error) string {
	return strings.NewReplacer(
		"number of clients", "--clients",
		"number of locks", "--locks",
		"invalid duration", "invalid --duration",
		"invalid warm-up", "invalid --warmup",
		"invalid hold", "invalid --hold",
	).Replace(strings.ReplaceAll(err.Error(), "\n", "; "))
}

// redactURL hides the user information of a backend URL, which may hold a
// password.
func redactURL(url string) string {
	scheme, rest, ok := strings.Cut(url, "://")
	if !ok {
		return url
	}
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		return scheme + "://REDACTED@" + rest[at+1:]
	}
	return url
}
