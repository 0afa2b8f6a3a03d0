package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fencerlock/fencer/internal/testutil"
	"github.com/fencerlock/fencer/internal/testutil/redistest"
)

// fencerCmd returns a command running the built fencer binary.
func fencerCmd(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(testutil.FencerBinary(t), args...)
	cmd.Env = append(os.Environ(), "FENCER_BACKEND=")
	return cmd
}

// runFencer runs the binary to completion and returns its exit status and
// combined output.
func runFencer(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := fencerCmd(t, args...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	}
	t.Fatalf("fencer %v: %v", args, err)
	return 0, ""
}

func TestRunUsageErrors(t *testing.T) {
	r := redistest.Start(t, nil)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no command", []string{"run", "--backend", r.URL(), "--lock", "a"}, "no command given"},
		{"no lock", []string{"run", "--backend", r.URL(), "--", "true"}, "--lock is required"},
		{"bad name", []string{"run", "--backend", r.URL(), "--lock", "a\tb", "--", "true"}, "control character"},
		{"long name", []string{"run", "--backend", r.URL(), "--lock", strings.Repeat("x", 300), "--", "true"}, "1 to 256 bytes"},
		{"bad ttl", []string{"run", "--backend", r.URL(), "--lock", "a", "--ttl", "5ms", "--", "true"}, "10ms to 24h"},
		{"unparsable ttl", []string{"run", "--backend", r.URL(), "--lock", "a", "--ttl", "soon", "--", "true"}, "invalid value"},
		{"negative wait", []string{"run", "--backend", r.URL(), "--lock", "a", "--wait", "-1s", "--", "true"}, "--wait"},
		{"zero grace", []string{"run", "--backend", r.URL(), "--lock", "a", "--grace", "0s", "--", "true"}, "--grace"},
		{"unknown flag", []string{"run", "--backend", r.URL(), "--lokc", "a", "--", "true"}, "flag provided but not defined"},
		{"bad scheme", []string{"run", "--backend", "http://x:1", "--lock", "a", "--", "true"}, "unknown scheme"},
		{"bad redis url", []string{"run", "--backend", "redis://host:notaport", "--lock", "a", "--", "true"}, "port"},
		{"even redlock", []string{"run", "--backend", "redlock://127.0.0.1:1,127.0.0.1:2", "--lock", "a", "--", "true"}, "odd"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := runFencer(t, tc.args...)
			if code != exitUsage || !strings.Contains(out, tc.want) {
				t.Fatalf("exit %d, output:\n%s\nwant exit %d and %q", code, out, exitUsage, tc.want)
			}
		})
	}
}

func TestRunPassesTokenAndStatus(t *testing.T) {
	r := redistest.Start(t, nil)
	code, out := runFencer(t, "run", "--backend", r.URL(), "--lock", "job", "--",
		"sh", "-c", `echo "lock=$FENCER_LOCK token=$FENCER_TOKEN guarantee=$FENCER_GUARANTEE"; exit 7`)
	if code != 7 {
		t.Fatalf("exit %d, want the command's 7\n%s", code, out)
	}
	if !strings.Contains(out, "lock=job token=1 guarantee=efficiency") {
		t.Fatalf("the command did not get its lock and token:\n%s", out)
	}
	if code, out := runFencer(t, "run", "--backend", r.URL(), "--lock", "job", "--", "/nonexistent/cmd"); code != 127 {
		t.Fatalf("a command that cannot start: exit %d, want 127\n%s", code, out)
	}
	// The lock was released both times: a try gets it at once.
	if code, out := runFencer(t, "run", "--backend", r.URL(), "--lock", "job", "--wait", "0", "--", "true"); code != 0 {
		t.Fatalf("lock not released after the command: exit %d\n%s", code, out)
	}
}

// startHolder starts `fencer run` holding the lock with a command that
// writes a marker file and then sleeps, and waits for the marker.
func startHolder(t *testing.T, url, lock, ttl, script string) (*testutil.Proc, string) {
	t.Helper()
	dir := t.TempDir()
	marker := filepath.Join(dir, "started")
	cmd := fencerCmd(t, "run", "--backend", url, "--lock", lock, "--ttl", ttl, "--grace", "3s", "--",
		"sh", "-c", fmt.Sprintf(`touch %q; %s`, marker, script))
	p := testutil.Start(t, "fencer-run-holder", cmd)
	waitFile(t, marker, p)
	return p, dir
}

func waitFile(t *testing.T, path string, p *testutil.Proc) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if p.Exited() {
			t.Fatalf("%s exited: %v\n%s", p.Name, p.ExitErr(), p.LogTail(2000))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never appeared\n%s", path, p.LogTail(2000))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRunLockHeld(t *testing.T) {
	r := redistest.Start(t, nil)
	holder, _ := startHolder(t, r.URL(), "busy", "15s", "sleep 60")
	if code, out := runFencer(t, "run", "--backend", r.URL(), "--lock", "busy", "--wait", "0", "--", "true"); code != exitNotHeld || !strings.Contains(out, "held by another owner") {
		t.Fatalf("try of a held lock: exit %d\n%s", code, out)
	}
	if code, out := runFencer(t, "run", "--backend", r.URL(), "--lock", "busy", "--wait", "300ms", "--", "true"); code != exitNotHeld || !strings.Contains(out, "not obtained within --wait 300ms") {
		t.Fatalf("wait for a held lock: exit %d\n%s", code, out)
	}
	holder.Kill()
}

// TestRunKilledHolderFreedAfterTTL: a holder killed with SIGKILL cannot
// release; its lock becomes free when its TTL runs out, not before.
func TestRunKilledHolderFreedAfterTTL(t *testing.T) {
	const ttl = 2 * time.Second
	r := redistest.Start(t, nil)
	holder, _ := startHolder(t, r.URL(), "crash", ttl.String(), "sleep 8") // orphaned by the kill; ends by itself
	killed := time.Now()
	holder.Kill()
	start := time.Now()
	code, out := runFencer(t, "run", "--backend", r.URL(), "--lock", "crash", "--wait", "20s", "--", "true")
	if code != 0 {
		t.Fatalf("the lock of a killed holder never became free: exit %d\n%s", code, out)
	}
	// The holder renewed at most TTL/3 before it was killed, so the key
	// lives at least 2/3 of the TTL past the kill.
	if waited := time.Since(start); waited < ttl/2 {
		t.Fatalf("got the lock %v after the holder was killed; its %v lease was still running", time.Since(killed), ttl)
	}
}

// TestRunStoreStopsAnswering: when Redis stops answering (SIGSTOP), the
// command is sent SIGTERM before the store could expire the lease, and
// fencer run exits 76.
func TestRunStoreStopsAnswering(t *testing.T) {
	r := redistest.Start(t, nil)
	dir := t.TempDir()
	termed := filepath.Join(dir, "termed")
	// The command notes SIGTERM and then lingers, so fencer run is still
	// waiting for it (and has not released) when the test looks at Redis.
	holder, _ := startHolder(t, r.URL(), "paused-store", "5s",
		fmt.Sprintf(`trap 'touch %q; sleep 30' TERM; sleep 30 & wait`, termed))
	r.Pause()
	waitFile(t, termed, holder)
	r.Resume()
	c := r.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pttl, err := c.PTTL(ctx, "fencer:{paused-store}").Result()
	if err != nil {
		t.Fatal(err)
	}
	if pttl <= 0 {
		t.Fatalf("the key had expired (PTTL %v) when the command was told to stop: the signal came too late", pttl)
	}
	err = holder.Wait(30 * time.Second) // after the grace period, SIGKILL

	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitLostLock {
		t.Fatalf("fencer run exit: %v, want %d\n%s", err, exitLostLock, holder.LogTail(2000))
	}
	if !strings.Contains(holder.LogTail(4000), "lease lost") {
		t.Fatalf("fencer run did not say the lease was lost:\n%s", holder.LogTail(4000))
	}
}

// TestRunForwardsSignals: SIGTERM to fencer run reaches the command, and
// the lock is released when it exits.
func TestRunForwardsSignals(t *testing.T) {
	r := redistest.Start(t, nil)
	dir := t.TempDir()
	got := filepath.Join(dir, "got-term")
	holder, _ := startHolder(t, r.URL(), "signals", "15s", fmt.Sprintf(`trap 'touch %q; exit 3' TERM; sleep 30 & wait`, got))
	if err := holder.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := holder.Wait(20 * time.Second)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("fencer run exit: %v, want the command's 3\n%s", err, holder.LogTail(2000))
	}
	if _, err := os.Stat(got); err != nil {
		t.Fatal("the command never got SIGTERM")
	}
	if code, out := runFencer(t, "run", "--backend", r.URL(), "--lock", "signals", "--wait", "0", "--", "true"); code != 0 {
		t.Fatalf("lock not released after the command exited: %d\n%s", code, out)
	}
}
