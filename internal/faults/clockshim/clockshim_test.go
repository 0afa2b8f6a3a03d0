package clockshim_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fencerlock/fencer/internal/faults/clockshim"
	"github.com/fencerlock/fencer/internal/history"
	"github.com/fencerlock/fencer/internal/testutil"
	"github.com/fencerlock/fencer/internal/testutil/redistest"
)

func build(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	so, err := clockshim.Build(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return so
}

func newOffset(t *testing.T) *clockshim.Offset {
	t.Helper()
	o, err := clockshim.NewOffset(filepath.Join(t.TempDir(), "offset"))
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func setOffset(t *testing.T, o *clockshim.Offset, d time.Duration) {
	t.Helper()
	if err := o.Set(d); err != nil {
		t.Fatal(err)
	}
	if got, err := o.Get(); err != nil || got != d.Truncate(time.Millisecond) {
		t.Fatalf("Get after Set(%v) = %v, %v", d, got, err)
	}
}

func TestBuildReuses(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	a, err := clockshim.Build(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(a)
	if err != nil {
		t.Fatal(err)
	}
	b, err := clockshim.Build(ctx, dir)
	if err != nil || b != a {
		t.Fatalf("second Build = %s, %v; want %s", b, err, a)
	}
	st2, _ := os.Stat(b)
	if !st2.ModTime().Equal(st.ModTime()) {
		t.Fatal("second Build compiled again")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("Build left %d entries in its directory; want just the library", len(entries))
	}
}

func TestOffsetRange(t *testing.T) {
	o := newOffset(t)
	if err := o.Set(100 * 365 * 24 * time.Hour); err == nil {
		t.Fatal("Set(100 years): no error")
	}
	setOffset(t, o, -1500*time.Millisecond+300*time.Microsecond)
}

// TestDate runs date(1) under the shim: a program the shim was not written
// for.
func TestDate(t *testing.T) {
	so := build(t)
	o := newOffset(t)
	for _, d := range []time.Duration{time.Hour, -25 * time.Hour, 0} {
		setOffset(t, o, d)
		cmd := exec.Command("date", "+%s")
		cmd.Env = append(os.Environ(), o.Env(so)...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("date under the shim: %v", err)
		}
		got, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		want := time.Now().Add(d).Unix()
		if diff := got - want; diff < -5 || diff > 5 {
			t.Errorf("offset %v: date says %d, want about %d", d, got, want)
		}
	}
}

type probe struct {
	in  io.Writer
	out *bufio.Scanner
}

type reading struct {
	gettimeofday, realtime, coarse, time time.Time
	mono                                 history.Time
}

func (p *probe) read(t *testing.T) reading {
	t.Helper()
	fmt.Fprintln(p.in)
	if !p.out.Scan() {
		t.Fatalf("probe stopped: %v", p.out.Err())
	}
	var us, real, coarse, secs, mono int64
	if _, err := fmt.Sscan(p.out.Text(), &us, &real, &coarse, &secs, &mono); err != nil {
		t.Fatalf("probe said %q: %v", p.out.Text(), err)
	}
	return reading{time.UnixMicro(us), time.Unix(0, real), time.Unix(0, coarse), time.Unix(secs, 0), history.Time(mono)}
}

// TestJumpWhileRunning moves the clock of a running program and checks every
// clock it reads: the wall clocks move, the monotonic clock does not.
func TestJumpWhileRunning(t *testing.T) {
	so := build(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "clockprobe")
	if out, err := exec.Command("gcc", "-O2", "-o", bin, "testdata/clockprobe.c").CombinedOutput(); err != nil {
		t.Fatalf("build clockprobe: %v\n%s", err, out)
	}
	o := newOffset(t)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), o.Env(so)...)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := testutil.Start(t, "clockprobe", cmd)
	defer p.Kill()
	pr := &probe{in: in, out: bufio.NewScanner(stdout)}

	for _, d := range []time.Duration{0, time.Hour, -30 * time.Second, 20 * time.Second, 0} {
		setOffset(t, o, d)
		time.Sleep(5 * time.Millisecond) // the shim re-reads the file at most once a millisecond
		monoBefore := history.Now()
		r := pr.read(t)
		monoAfter := history.Now()
		want := time.Now().Add(d)
		for name, got := range map[string]time.Time{"gettimeofday": r.gettimeofday, "CLOCK_REALTIME": r.realtime, "CLOCK_REALTIME_COARSE": r.coarse, "time": r.time} {
			if diff := got.Sub(want); diff < -2*time.Second || diff > 2*time.Second {
				t.Errorf("offset %v: %s reads %v, want about %v", d, name, got, want)
			}
		}
		if r.mono < monoBefore || r.mono > monoAfter {
			t.Errorf("offset %v: CLOCK_MONOTONIC %v is not between this process's %v and %v; the shim must leave it alone", d, r.mono, monoBefore, monoAfter)
		}
	}
}

// TestRedisKeyExpiresEarly is Kleppmann's clock jump: a key set with a 10 s
// TTL is gone right after the server's clock jumps 20 s forward, while the
// same key on a server whose clock did not jump is still there.
func TestRedisKeyExpiresEarly(t *testing.T) {
	so := build(t)
	jumped, steady := newOffset(t), newOffset(t)
	a := redistest.Start(t, &redistest.Options{Env: jumped.Env(so)})
	b := redistest.Start(t, &redistest.Options{Env: steady.Env(so)})
	ca, cb := a.Client(), b.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	if info, err := ca.Info(ctx, "server").Result(); err == nil {
		for _, l := range strings.Split(info, "\n") {
			if strings.HasPrefix(l, "monotonic_clock:") {
				t.Logf("redis %s", strings.TrimSpace(l))
			}
		}
	}
	for _, c := range []*redis.Client{ca, cb} {
		if err := c.Set(ctx, "lock", "client1", 10*time.Second).Err(); err != nil {
			t.Fatal(err)
		}
	}
	setOffset(t, jumped, 20*time.Second)

	// TIME reads gettimeofday, like key expiry: wait until it shows the jump.
	deadline := time.Now().Add(5 * time.Second)
	for {
		now, err := ca.Time(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		if now.Sub(time.Now()) > 19*time.Second {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis TIME still says %v, no jump, 5s after the offset was set", now)
		}
		time.Sleep(time.Millisecond)
	}
	if v, err := ca.Get(ctx, "lock").Result(); err != redis.Nil {
		t.Fatalf("GET on the jumped server = %q, %v; want nil: the key should have expired", v, err)
	}
	if v, err := cb.Get(ctx, "lock").Result(); err != nil || v != "client1" {
		t.Fatalf("GET on the steady server = %q, %v; want client1", v, err)
	}
	if ttl, err := cb.PTTL(ctx, "lock").Result(); err != nil || ttl < 5*time.Second {
		t.Fatalf("PTTL on the steady server = %v, %v; want most of the 10 s", ttl, err)
	}
	// The client that held the lock can now be joined by a second one: the
	// lock is free on the jumped node.
	if ok, err := ca.SetNX(ctx, "lock", "client2", 10*time.Second).Result(); err != nil || !ok {
		t.Fatalf("SET NX on the jumped server = %v, %v; want the lock granted again", ok, err)
	}
}

// TestRedisKeepsAnswering runs thousands of commands against a server under
// the shim while its clock jumps back and forth.
func TestRedisKeepsAnswering(t *testing.T) {
	so := build(t)
	o := newOffset(t)
	s := redistest.Start(t, &redistest.Options{Env: o.Env(so)})
	c := s.Client()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(stop)
	wg.Go(func() {
		offsets := []time.Duration{time.Minute, -time.Minute, 0, 3 * time.Hour}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(3 * time.Millisecond):
			}
			if err := o.Set(offsets[i%len(offsets)]); err != nil {
				t.Error(err)
				return
			}
		}
	})

	const n = 5000
	for i := 0; i < n; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		key := "k" + strconv.Itoa(i%100)
		var err error
		switch i % 3 {
		case 0:
			err = c.Set(ctx, key, i, time.Hour).Err()
		case 1:
			err = c.Get(ctx, key).Err()
			if err == redis.Nil {
				err = nil
			}
		case 2:
			err = c.Incr(ctx, "counter").Err()
		}
		cancel()
		if err != nil {
			t.Fatalf("command %d of %d: %v\n%s", i, n, err, s.Proc.LogTail(2000))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if got, err := c.Get(ctx, "counter").Int(); err != nil || got != n/3 {
		t.Fatalf("counter = %d, %v; want %d", got, err, n/3)
	}
}
