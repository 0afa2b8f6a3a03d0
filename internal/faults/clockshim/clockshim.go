package clockshim

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

//go:embed csrc/shim.c
var source []byte

// OffsetFileEnv is the environment variable that tells the shim where the
// offset file is.
const OffsetFileEnv = "FENCER_CLOCK_OFFSET_FILE"

// Build compiles the shim with gcc into dir and returns the path of the
// shared library, named after a hash of the source, so that calling Build
// again with the same dir reuses it. It is safe to call from several
// processes at once: each compiles to a temporary file and renames it into
// place. It returns an error, with gcc's output, if gcc is missing or
// fails; cancelling ctx kills gcc.
func Build(ctx context.Context, dir string) (soPath string, err error) {
	sum := sha256.Sum256(source)
	soPath = filepath.Join(dir, "clockshim-"+hex.EncodeToString(sum[:8])+".so")
	if _, err := os.Stat(soPath); err == nil {
		return soPath, nil
	}
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		return "", fmt.Errorf("clockshim: the shim is C and needs gcc (apt-get install gcc): %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("clockshim: %w", err)
	}
	tmpDir, err := os.MkdirTemp(dir, ".clockshim-build-")
	if err != nil {
		return "", fmt.Errorf("clockshim: %w", err)
	}
	defer os.RemoveAll(tmpDir)
	src := filepath.Join(tmpDir, "shim.c")
	if err := os.WriteFile(src, source, 0o644); err != nil {
		return "", fmt.Errorf("clockshim: %w", err)
	}
	tmpSO := filepath.Join(tmpDir, "shim.so")
	cmd := exec.CommandContext(ctx, gcc, "-shared", "-fPIC", "-O2", "-Wall", "-o", tmpSO, src, "-ldl")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("clockshim: gcc %s: %w\n%s", src, errors.Join(err, ctx.Err()), out)
	}
	if err := os.Rename(tmpSO, soPath); err != nil {
		return "", fmt.Errorf("clockshim: %w", err)
	}
	return soPath, nil
}

// Offset is the clock offset of the processes started with its [Offset.Env]:
// a file holding a number of milliseconds. It is safe for concurrent use;
// the last Set wins. It needs no cleanup beyond its directory.
type Offset struct {
	path string
}

// NewOffset creates (or overwrites) the offset file at path with an offset
// of zero.
func NewOffset(path string) (*Offset, error) {
	o := &Offset{path: path}
	if err := o.Set(0); err != nil {
		return nil, err
	}
	return o, nil
}

// Path returns the offset file's path.
func (o *Offset) Path() string { return o.path }

// Set makes the clock of every process using this offset read real time + d
// from about a millisecond after Set returns. d may be negative; it is
// truncated to whole milliseconds and must be less than 10^12 ms (about 31
// years) either way. The file is replaced atomically (write, then rename),
// so a process never reads half a number.
func (o *Offset) Set(d time.Duration) error {
	ms := d.Milliseconds()
	if ms <= -1e12 || ms >= 1e12 {
		return fmt.Errorf("clockshim: offset %v is out of range; use less than ±10^12 ms (about 31 years)", d)
	}
	f, err := os.CreateTemp(filepath.Dir(o.path), ".offset-")
	if err != nil {
		return fmt.Errorf("clockshim: set offset: %w", err)
	}
	_, werr := f.WriteString(strconv.FormatInt(ms, 10) + "\n")
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("clockshim: set offset: %w", err)
	}
	if err := os.Rename(f.Name(), o.path); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("clockshim: set offset: %w", err)
	}
	return nil
}

// Get returns the offset in the file.
func (o *Offset) Get() (time.Duration, error) {
	b, err := os.ReadFile(o.path)
	if err != nil {
		return 0, fmt.Errorf("clockshim: %w", err)
	}
	ms, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("clockshim: offset file %s holds %q, not a number of milliseconds: %w", o.path, b, err)
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// Env returns the environment variables that load the shim at soPath (from
// [Build]) into a process and point it at this offset. Append them to
// exec.Cmd.Env (or redistest.Options.Env); they replace any LD_PRELOAD the
// environment had, since exec.Cmd keeps the last value of a variable.
func (o *Offset) Env(soPath string) []string {
	return []string{"LD_PRELOAD=" + soPath, OffsetFileEnv + "=" + o.path}
}
