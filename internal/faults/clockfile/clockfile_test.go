package clockfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fencerlock/fencer/server"
)

var _ server.Clock = (*Clock)(nil)

// near reports whether got is within tol of want.
func near(got, want, tol time.Duration) bool { return got > want-tol && got < want+tol }

func TestJumpAndRate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clock")
	f, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(path, "n2")
	if err != nil {
		t.Fatal(err)
	}
	if d := c.Now().Sub(time.Now()); !near(d, 0, 50*time.Millisecond) {
		t.Fatalf("a fresh clock is %v off the real time", d)
	}
	if err := f.Set("n2", 20*time.Second, 1); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * rereadEvery)
	before := time.Now()
	if d := c.Now().Sub(before); !near(d, 20*time.Second, 100*time.Millisecond) {
		t.Fatalf("after a +20s jump the clock is %v ahead, want 20s", d)
	}
	// Another node's line does not touch n2; the wildcard does not either.
	if err := f.Set("n3", -time.Hour, 1); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * rereadEvery)
	if d := c.Now().Sub(time.Now()); !near(d, 20*time.Second, 100*time.Millisecond) {
		t.Fatalf("n3's setting moved n2's clock: %v ahead", d)
	}

	// A rate change does not jump the clock; afterwards it runs faster.
	if err := f.Set("n2", 20*time.Second, 3); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * rereadEvery)
	t0, r0 := c.Now(), time.Now()
	if d := t0.Sub(r0); !near(d, 20*time.Second, 100*time.Millisecond) {
		t.Fatalf("the rate change moved the clock to %v ahead", d)
	}
	time.Sleep(100 * time.Millisecond)
	t1, r1 := c.Now(), time.Now()
	if ratio := float64(t1.Sub(t0)) / float64(r1.Sub(r0)); ratio < 2.5 || ratio > 3.5 {
		t.Fatalf("clock ran %.2fx the real rate, want 3x", ratio)
	}
	// Back to rate 1: the time gained stays.
	if err := f.Set("n2", 20*time.Second, 1); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * rereadEvery)
	gained := c.Now().Sub(time.Now()) - 20*time.Second
	if gained < 150*time.Millisecond {
		t.Fatalf("after running at 3x for >100ms the clock gained only %v", gained)
	}
	if s := c.Setting(); s != (Setting{Offset: 20 * time.Second, Rate: 1}) {
		t.Errorf("Setting() = %+v", s)
	}
}

func TestBackwardJumpKeepsMonotonicSub(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clock")
	f, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(path, "n1")
	if err != nil {
		t.Fatal(err)
	}
	before := c.Now()
	if err := f.Set(Wildcard, -10*time.Second, 1); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * rereadEvery)
	// The server's timers compute waits with Sub: it must see the jump.
	if d := c.Now().Sub(before); !near(d, -10*time.Second, 200*time.Millisecond) {
		t.Fatalf("after a -10s jump, Now().Sub(before) = %v", d)
	}
}

func TestBadFile(t *testing.T) {
	dir := t.TempDir()
	if _, err := New(filepath.Join(dir, "missing"), "n1"); err == nil || !strings.Contains(err.Error(), "clockfile.Create") {
		t.Errorf("New on a missing file: %v", err)
	}
	for _, content := range []string{"n1 5s", "n1 soon 1", "n1 1s fast", "n1 1s 0", "n1 1s 1000"} {
		p := filepath.Join(dir, "bad")
		os.WriteFile(p, []byte(content+"\n"), 0o644)
		if _, err := New(p, "n1"); err == nil {
			t.Errorf("New accepted %q", content)
		}
	}
	// A file broken after start keeps the last setting.
	p := filepath.Join(dir, "clock")
	f, err := Create(p)
	if err != nil {
		t.Fatal(err)
	}
	f.Set("n1", 5*time.Second, 1)
	c, err := New(p, "n1")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(p, []byte("garbage\n"), 0o644)
	time.Sleep(2 * rereadEvery)
	if d := c.Now().Sub(time.Now()); !near(d, 5*time.Second, 100*time.Millisecond) {
		t.Errorf("after the file broke the clock is %v ahead, want the last 5s", d)
	}
	if err, n := c.Err(); err == nil || n == 0 {
		t.Errorf("Err() = %v, %d; want the parse error", err, n)
	}
}

func TestSetValidation(t *testing.T) {
	f, err := Create(filepath.Join(t.TempDir(), "clock"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		node   string
		offset time.Duration
		rate   float64
	}{{"", 0, 1}, {"a b", 0, 1}, {"n1", 0, 0}, {"n1", 0, 101}, {"n1", 11 * 365 * 24 * time.Hour, 1}} {
		if err := f.Set(tc.node, tc.offset, tc.rate); err == nil {
			t.Errorf("Set(%q, %v, %v) accepted", tc.node, tc.offset, tc.rate)
		}
	}
}
