package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/backends"
)

const runUsage = `Usage: fencer run [--backend URL] --lock NAME [--ttl 15s] [--wait 30s] [--grace 3s] -- COMMAND [ARGS...]

Runs COMMAND while holding the lock NAME, renewing the lease while it runs.
COMMAND gets FENCER_LOCK (the name), FENCER_TOKEN (the fencing token, empty
when the backend issues none) and FENCER_GUARANTEE ("correctness" or
"efficiency") in its environment; send FENCER_TOKEN with every write to the
resource the lock protects.

If the lease is lost, or may have been lost (its conservative validity ran
out without a successful renewal), fencer run sends SIGTERM to COMMAND's
process group, then SIGKILL after --grace, and exits 76. SIGINT and SIGTERM
sent to fencer run are forwarded to COMMAND. The lock is released when
COMMAND exits.

Backend URLs (--backend, else FENCER_BACKEND, else fencer://127.0.0.1:7700):
  fencer://host:port[,host:port...]   the fencer server (correctness)
  postgres://user@host:port/db        a PostgreSQL lock table (correctness)
  redis://[user:password@]host:port[/db]
  redlock://host1:port1,host2:port2,host3:port3

Exit status: COMMAND's own (128+N if it died of signal N); 2 for a usage
error; 75 if the lock was not obtained within --wait; 76 if the lease was
lost while COMMAND ran; 127 if COMMAND could not be started.

Flags:
`

func runCommand(ctx context.Context, env *environment, args []string) int {
	fs := flag.NewFlagSet("fencer run", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	fs.Usage = func() {
		fmt.Fprint(env.stderr, runUsage)
		fs.PrintDefaults()
	}
	backendURL := fs.String("backend", "", "backend URL; default $FENCER_BACKEND, else "+backends.DefaultURL)
	lock := fs.String("lock", "", "name of the lock (required)")
	ttl := fs.Duration("ttl", fencer.DefaultTTL, "lease time to live, 10ms to 24h; renewed every ttl/3")
	wait := fs.Duration("wait", 30*time.Second, "how long to wait for the lock; 0 tries once")
	grace := fs.Duration("grace", 3*time.Second, "time between SIGTERM and SIGKILL when the lease is lost")
	verbose := fs.Bool("v", false, "log renewals and lease events to stderr")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	argv := fs.Args()
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(env.stderr, "fencer run: "+format+"\n", a...)
		fmt.Fprintln(env.stderr, "Run 'fencer run --help' for usage.")
		return exitUsage
	}
	switch {
	case len(argv) == 0:
		return usageErr("no command given; put it after --, as in: fencer run --lock NAME -- COMMAND [ARGS...]")
	case *lock == "":
		return usageErr("--lock is required")
	case *wait < 0:
		return usageErr("--wait %v is negative; accepted: 0 (try once) or a positive duration", *wait)
	case *grace <= 0 || *grace > time.Hour:
		return usageErr("--grace %v is out of range; accepted: more than 0 up to 1h", *grace)
	}
	if err := fencer.ValidateName(*lock); err != nil {
		return usageErr("%v", err)
	}
	if err := fencer.ValidateTTL(*ttl); err != nil {
		return usageErr("%v", err)
	}
	url := *backendURL
	if url == "" {
		url = env.getenv("FENCER_BACKEND")
	}
	if url == "" {
		url = backends.DefaultURL
	}
	b, err := backends.Open(ctx, url)
	if err != nil {
		if errors.Is(err, fencer.ErrInvalid) {
			return usageErr("%v", err)
		}
		fmt.Fprintf(env.stderr, "fencer run: %v\n", err)
		return exitNotHeld
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(env.stderr, &slog.HandlerOptions{Level: level}))
	client := fencer.New(b, &fencer.Config{Logger: logger})
	defer client.Close()

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)

	lease, code := acquireForRun(ctx, env, client, sigs, *lock, *ttl, *wait)
	if lease == nil {
		return code
	}
	return runUnderLease(env, lease, sigs, argv, *grace)
}

// acquireForRun gets the lease, or returns the exit status when it cannot.
func acquireForRun(ctx context.Context, env *environment, c *fencer.Client, sigs <-chan os.Signal, name string, ttl, wait time.Duration) (*fencer.Lease, int) {
	opts := &fencer.Options{TTL: ttl}
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	type result struct {
		l   *fencer.Lease
		err error
	}
	done := make(chan result, 1)
	go func() {
		var l *fencer.Lease
		var err error
		if wait == 0 {
			l, err = c.TryAcquire(actx, name, opts)
		} else {
			wctx, wcancel := context.WithTimeout(actx, wait)
			l, err = c.Acquire(wctx, name, opts)
			wcancel()
		}
		done <- result{l, err}
	}()
	var sig os.Signal
	for {
		select {
		case s := <-sigs:
			sig = s
			cancel(fmt.Errorf("interrupted by %v", s))
			continue
		case r := <-done:
			if r.err == nil && sig == nil {
				return r.l, exitOK
			}
			if r.l != nil {
				rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
				r.l.Release(rctx)
				rcancel()
			}
			if sig != nil {
				fmt.Fprintf(env.stderr, "fencer run: interrupted by %v while waiting for lock %q\n", sig, name)
				return nil, 128 + int(sig.(syscall.Signal))
			}
			switch {
			case errors.Is(r.err, fencer.ErrLocked):
				fmt.Fprintf(env.stderr, "fencer run: lock %q is held by another owner\n", name)
			case errors.Is(r.err, context.DeadlineExceeded):
				fmt.Fprintf(env.stderr, "fencer run: lock %q was not obtained within --wait %v\n", name, wait)
			case errors.Is(r.err, fencer.ErrInvalid), errors.Is(r.err, fencer.ErrGuarantee):
				fmt.Fprintf(env.stderr, "fencer run: %v\n", r.err)
				return nil, exitUsage
			default:
				fmt.Fprintf(env.stderr, "fencer run: lock %q was not obtained: %v\n", name, r.err)
			}
			return nil, exitNotHeld
		}
	}
}

// runUnderLease runs argv while lease is held and returns fencer run's exit
// status.
func runUnderLease(env *environment, lease *fencer.Lease, sigs <-chan os.Signal, argv []string, grace time.Duration) int {
	release := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := lease.Release(ctx); err != nil && !errors.Is(err, fencer.ErrLeaseLost) {
			fmt.Fprintf(env.stderr, "fencer run: release of lock %q: %v\n", lease.Name(), err)
		}
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, env.stdout, env.stderr
	token := ""
	if lease.Token() != fencer.NoToken {
		token = lease.Token().String()
	}
	cmd.Env = append(os.Environ(),
		"FENCER_LOCK="+lease.Name(),
		"FENCER_TOKEN="+token,
		"FENCER_GUARANTEE="+lease.Guarantee().String(),
	)
	// Its own process group, so that a lost lease stops the command and
	// everything it started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		release()
		fmt.Fprintf(env.stderr, "fencer run: cannot start %s: %v\n", strings.Join(argv, " "), err)
		return 127
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	group := -cmd.Process.Pid

	var lost <-chan struct{} = lease.Done()
	var kill <-chan time.Time
	lostLease := false
	for {
		select {
		case err := <-exited:
			if lostLease {
				_ = syscall.Kill(group, syscall.SIGKILL) // anything it left behind
				fmt.Fprintf(env.stderr, "fencer run: command stopped after the lease on lock %q was lost\n", lease.Name())
				release()
				return exitLostLock
			}
			release()
			return exitStatus(err)
		case s := <-sigs:
			_ = syscall.Kill(group, s.(syscall.Signal))
		case <-lost:
			lost = nil
			lostLease = true
			fmt.Fprintf(env.stderr, "fencer run: %v; sending SIGTERM to the command, SIGKILL in %v\n", lease.Err(), grace)
			_ = syscall.Kill(group, syscall.SIGTERM)
			kill = time.After(grace)
		case <-kill:
			fmt.Fprintf(env.stderr, "fencer run: command still running %v after SIGTERM; sending SIGKILL\n", grace)
			_ = syscall.Kill(group, syscall.SIGKILL)
			kill = nil
		}
	}
}

func exitStatus(err error) int {
	if err == nil {
		return exitOK
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return exitFailure
}
