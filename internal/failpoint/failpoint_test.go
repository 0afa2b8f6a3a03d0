package failpoint

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	tests := []struct {
		spec    string
		want    string // String() of the Set
		wantErr string
	}{
		{spec: "", want: ""},
		{spec: "before-write=1*stop", want: "before-write=1*stop"},
		{spec: " a = sleep(20ms) ; b=off;", want: "a=sleep(20ms);b=off"},
		{spec: "k=2*kill", want: "k=2*kill"},
		{spec: "nope", wantErr: "NAME=[COUNT*]ACTION"},
		{spec: "a=", wantErr: "NAME=[COUNT*]ACTION"},
		{spec: "a=jump", wantErr: "unknown action"},
		{spec: "a=0*stop", wantErr: "positive integer"},
		{spec: "a=x*stop", wantErr: "positive integer"},
		{spec: "a=sleep(forever)", wantErr: "sleep needs a duration"},
		{spec: "a=sleep(-1s)", wantErr: "sleep needs a duration"},
		{spec: "a=stop;a=off", wantErr: "given twice"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			s, err := Parse(tt.spec, nil)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse(%q) = %v, want an error containing %q", tt.spec, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.spec, err)
			}
			if got := s.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestUnknownName(t *testing.T) {
	_, err := Parse("befor-write=stop", &Options{Names: []string{"before-write", "after-read"}})
	if err == nil || !strings.Contains(err.Error(), "before-write, after-read") {
		t.Fatalf("err = %v, want one listing the points", err)
	}
}

func TestEvalCountsAndOnFire(t *testing.T) {
	var mu sync.Mutex
	var fired []string
	returned := 0
	s, err := Parse("p=2*sleep(1ms);q=off", &Options{
		OnFire: func(name string, a Action) {
			mu.Lock()
			fired = append(fired, name+" "+string(a.Kind))
			mu.Unlock()
		},
		OnReturn: func(name string, a Action) { returned++ },
	})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for range 5 {
		s.Eval("p")
		s.Eval("q")
		s.Eval("unarmed")
	}
	if got := s.Fired("p"); got != 2 {
		t.Errorf("Fired(p) = %d, want 2", got)
	}
	if got := s.Fired("q"); got != 0 {
		t.Errorf("Fired(q) = %d, want 0 (off)", got)
	}
	if len(fired) != 2 || fired[0] != "p sleep" {
		t.Errorf("OnFire calls = %v, want two for p", fired)
	}
	if returned != 2 {
		t.Errorf("OnReturn called %d times, want 2", returned)
	}
	if time.Since(start) < 2*time.Millisecond {
		t.Errorf("two sleeps of 1ms took %v", time.Since(start))
	}
	if got := s.String(); got != "p=0*sleep(1ms);q=off" {
		t.Errorf("String() after firing = %q", got)
	}
}

func TestNilSet(t *testing.T) {
	var s *Set
	s.Eval("anything")
	if s.Fired("anything") != 0 || len(s.Points()) != 0 {
		t.Error("a nil Set fired")
	}
}

func TestConcurrentEval(t *testing.T) {
	s, err := Parse("p=10*off;r=3*sleep(1us)", nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 10 {
				s.Eval("r")
			}
		})
	}
	wg.Wait()
	if got := s.Fired("r"); got != 3 {
		t.Errorf("Fired(r) = %d, want exactly 3", got)
	}
}

// TestStopWaitsForSIGCONT runs the stop action in a child process (this
// test binary, re-executed) and checks that nothing after the point runs
// until the parent sends SIGCONT.
func TestStopWaitsForSIGCONT(t *testing.T) {
	if os.Getenv("FAILPOINT_STOP_CHILD") == "1" {
		s, _ := Parse("p=1*stop", nil)
		fmt.Println("before")
		s.Eval("p")
		fmt.Println("after")
		os.Exit(0)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestStopWaitsForSIGCONT$")
	cmd.Env = append(os.Environ(), "FAILPOINT_STOP_CHILD=1")
	outPath := t.TempDir() + "/out"
	outFile, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	defer outFile.Close()
	cmd.Stdout = outFile // a file: no copying goroutine to race with
	output := func() string { b, _ := os.ReadFile(outPath); return string(b) }
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	stat := "/proc/" + strconv.Itoa(cmd.Process.Pid) + "/stat"
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(stat)
		if i := bytes.LastIndexByte(b, ')'); i > 0 && i+2 < len(b) && b[i+2] == 'T' {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the child never stopped")
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	if strings.Contains(output(), "after") {
		t.Fatalf("the child ran past the stop point before SIGCONT: %q", output())
	}
	if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(output(), "before\nafter") {
		t.Fatalf("child output %q", output())
	}
}
