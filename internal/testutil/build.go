package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

var build struct {
	once sync.Once
	path string
	err  error
	out  []byte
}

// FencerBinary builds cmd/fencer once per test process (with -race when the
// test binary has it) and returns the path of the binary.
func FencerBinary(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			build.err = err
			return
		}
		// One shared place per flavour, so repeated test runs do not fill
		// the temporary directory; each process builds to its own file and
		// renames it into place, which is atomic.
		flavour := "plain"
		if raceEnabled {
			flavour = "race"
		}
		dir := filepath.Join(os.TempDir(), "fencer-test-bin", flavour)
		if build.err = os.MkdirAll(dir, 0o755); build.err != nil {
			return
		}
		build.path = filepath.Join(dir, "fencer")
		tmp := build.path + "." + strconv.Itoa(os.Getpid())
		args := []string{"build", "-o", tmp}
		if raceEnabled {
			args = append(args, "-race")
		}
		args = append(args, "./cmd/fencer")
		cmd := exec.Command("go", args...)
		cmd.Dir = root
		build.out, build.err = cmd.CombinedOutput()
		if build.err == nil {
			build.err = os.Rename(tmp, build.path)
		}
	})
	if build.err != nil {
		t.Fatalf("build cmd/fencer: %v\n%s", build.err, build.out)
	}
	return build.path
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	return filepath.Dir(strings.TrimSpace(string(out))), nil
}
