package procs

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/fencerlock/fencer/internal/testutil"
)

// Store is a `fencer store` process: the fenced key-value store the
// workers write to. It keeps everything in memory (no data directory):
// the checker reads its accept log, which is in memory anyway.
type Store struct {
	Addr string // 127.0.0.1:port
	proc *testutil.Proc
}

// StartStore starts `binary store` with its log in dir and waits until it
// accepts connections. A port taken between choosing and binding it is
// retried with another.
func StartStore(ctx context.Context, binary, dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("procs: %w", err)
	}
	var lastErr error
	for attempt := range 3 {
		addr, err := FreeAddr()
		if err != nil {
			return nil, err
		}
		cmd := exec.Command(binary, "store", "--listen", addr)
		p, err := testutil.StartProc(dir, fmt.Sprintf("store-%d", attempt+1), cmd)
		if err != nil {
			return nil, fmt.Errorf("procs: start %s store: %w", binary, err)
		}
		if lastErr = WaitTCP(ctx, addr, p); lastErr == nil {
			return &Store{Addr: addr, proc: p}, nil
		}
		p.Kill()
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("procs: the store did not start (logs in %s): %w", filepath.Clean(dir), lastErr)
}

// URL returns the store's base URL, http://127.0.0.1:port.
func (s *Store) URL() string { return "http://" + s.Addr }

// Proc returns the store's process.
func (s *Store) Proc() *testutil.Proc { return s.proc }

// Close kills the store.
func (s *Store) Close() error {
	s.proc.Kill()
	return nil
}
