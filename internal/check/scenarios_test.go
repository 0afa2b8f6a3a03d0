package check

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fencerlock/fencer/internal/check/analyze"
)

// plainBinary builds cmd/fencer without the race detector, once per test
// process: the scenarios time pauses against leases, and the servers and
// workers run them, so they run at full speed even under go test -race
// (which still covers the harness, in this process).
var plainBinary = sync.OnceValues(func() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	dir := filepath.Join(os.TempDir(), "fencer-test-bin", "plain")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "fencer")
	tmp := fmt.Sprintf("%s.%d", path, os.Getpid())
	cmd := exec.Command("go", "build", "-o", tmp, "./cmd/fencer")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/fencer: %v\n%s", err, b)
	}
	return path, os.Rename(tmp, path)
})

// TestScenarios runs every scenario once, in its short form, against every
// backend it names, on real processes, and wants every verdict to be pass:
// where fencing protects, no stale write accepted and no update lost;
// where the articles say a backend breaks, the break reproduced.
func TestScenarios(t *testing.T) {
	if testing.Short() {
		t.Skip("the scenarios start real servers and take a few minutes; not in -short")
	}
	bin, err := plainBinary()
	if err != nil {
		t.Fatal(err)
	}
	plan, err := Plan(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	opts := &Options{Binary: bin, Dir: t.TempDir(), Seed: 20260101}
	start := time.Now()
	for i, pl := range plan {
		t.Run(pl.Scenario.Name+"/"+pl.Case.Backend, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
			defer cancel()
			o := runOne(ctx, opts, i+1, pl)
			r := o.Analysis.Result
			t.Logf("%s in %.1fs: %s", r.Verdict, o.Elapsed.Seconds(), r.Observed)
			if r.Verdict != analyze.VerdictPass {
				t.Errorf("%s × %s: expected %s, verdict %s:\n  %s\n%s", pl.Scenario.Name, pl.Case.Backend, r.Expected, r.Verdict,
					strings.Join(r.Reasons, "\n  "), logTails(o.Dir))
			}
		})
	}
	t.Logf("%d runs in %v", len(plan), time.Since(start).Round(time.Second))
}

// logTails returns the end of every log of a run, for a failure message.
func logTails(dir string) string {
	var b strings.Builder
	files, _ := filepath.Glob(filepath.Join(dir, "logs", "*.log"))
	more, _ := filepath.Glob(filepath.Join(dir, "cluster", "*.log"))
	for _, f := range append(files, more...) {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if len(data) > 1500 {
			data = data[len(data)-1500:]
		}
		fmt.Fprintf(&b, "==> %s <==\n%s\n", f, data)
	}
	return b.String()
}
