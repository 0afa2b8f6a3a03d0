// Package redistest starts real redis-server processes for tests, on free
// loopback ports in temporary directories.
package redistest

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fencerlock/fencer/internal/testutil"
)

// Options configure a server. The zero value is a plain in-memory server.
type Options struct {
	// AppendFsyncAlways turns on the append-only file with an fsync on every
	// write: Redis at its most durable.
	AppendFsyncAlways bool
	// Env is added to the process environment (an LD_PRELOAD clock shim).
	Env []string
	// Args are extra command-line settings, e.g. "--maxmemory", "10mb".
	Args []string
}

// Server is one redis-server process.
type Server struct {
	Addr string // 127.0.0.1:port
	Port int
	Dir  string

	t    testing.TB
	opts Options
	Proc *testutil.Proc
}

// Start starts a redis-server and waits until it answers PING. It is killed
// when the test ends.
func Start(t testing.TB, opts *Options) *Server {
	t.Helper()
	s := &Server{t: t, Dir: t.TempDir()}
	if opts != nil {
		s.opts = *opts
	}
	s.Port = testutil.FreePort(t)
	s.Addr = "127.0.0.1:" + strconv.Itoa(s.Port)
	s.start()
	return s
}

func (s *Server) start() {
	t := s.t
	t.Helper()
	bin := testutil.LookPath(t, "redis-server", "redis-server")
	args := []string{
		"--port", strconv.Itoa(s.Port),
		"--bind", "127.0.0.1",
		"--dir", s.Dir,
		"--save", "",
		"--daemonize", "no",
		"--protected-mode", "yes",
		"--loglevel", "warning",
	}
	if s.opts.AppendFsyncAlways {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		args = append(args, "--appendonly", "no")
	}
	args = append(args, s.opts.Args...)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(cmd.Environ(), s.opts.Env...)
	cmd.Dir = s.Dir
	s.Proc = testutil.Start(t, "redis-"+strconv.Itoa(s.Port), cmd)
	testutil.WaitTCP(t, s.Addr, 10*time.Second, s.Proc)
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on %s does not answer PING: %v\n%s", s.Addr, err, s.Proc.LogTail(2000))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// URL returns the server's redis:// URL.
func (s *Server) URL() string { return "redis://" + s.Addr }

// Client returns a go-redis client of the server, closed when the test ends.
func (s *Server) Client() *redis.Client {
	// Without ContextTimeoutEnabled, go-redis waits ReadTimeout (5 s) on
	// a paused server however soon ctx ends.
	c := redis.NewClient(&redis.Options{Addr: s.Addr, ContextTimeoutEnabled: true})
	s.t.Cleanup(func() { c.Close() })
	return c
}

// Pause stops the server with SIGSTOP: it keeps its connections open and
// answers nothing.
func (s *Server) Pause() {
	s.t.Helper()
	if err := s.Proc.Pause(); err != nil {
		s.t.Fatalf("pause redis %s: %v", s.Addr, err)
	}
}

// Resume continues a paused server.
func (s *Server) Resume() {
	s.t.Helper()
	if err := s.Proc.Resume(); err != nil {
		s.t.Fatalf("resume redis %s: %v", s.Addr, err)
	}
}

// Kill kills the server with SIGKILL.
func (s *Server) Kill() { s.Proc.Kill() }

// Restart kills the server and starts it again on the same port and
// directory. Without AppendFsyncAlways it comes back empty, like a Redis
// node restarted without persistence.
func (s *Server) Restart() {
	s.t.Helper()
	s.Proc.Kill()
	s.start()
}

// String returns the server's address.
func (s *Server) String() string { return fmt.Sprintf("redis-server %s", s.Addr) }
