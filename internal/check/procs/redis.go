package procs

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fencerlock/fencer/internal/testutil"
)

// RedisOptions configure a redis-server. The zero value is a plain
// in-memory server on a free port.
type RedisOptions struct {
	// AOF turns on the append-only file with an fsync on every write, so
	// that a kill -9 and restart keeps every acknowledged key.
	AOF bool
	// ReplicaOf, "host:port", makes the server a replica of that primary.
	ReplicaOf string
	// Env is added to the process environment (the clock shim's).
	Env []string
}

// Redis is one redis-server process, restartable on the same port and
// directory.
type Redis struct {
	Name string // e.g. "r1"; the process and log name
	Addr string // 127.0.0.1:port
	Dir  string

	bin  string
	opts RedisOptions

	mu   sync.Mutex
	proc *testutil.Proc
}

// StartRedis starts a redis-server named name in dir (created if needed)
// and waits until it answers PING.
func StartRedis(ctx context.Context, dir, name string, opts RedisOptions) (*Redis, error) {
	bin, err := LookPath("redis-server", "redis-server")
	if err != nil {
		return nil, err
	}
	addr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	r := &Redis{Name: name, Addr: addr, Dir: filepath.Join(dir, name), bin: bin, opts: opts}
	if err := os.MkdirAll(r.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("procs: %w", err)
	}
	if err := r.start(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Redis) start(ctx context.Context) error {
	_, port, _ := net.SplitHostPort(r.Addr)
	args := []string{
		"--port", port,
		"--bind", "127.0.0.1",
		"--dir", r.Dir,
		"--save", "",
		"--daemonize", "no",
		"--protected-mode", "yes",
		"--loglevel", "warning",
		"--repl-diskless-sync", "yes",
		"--repl-diskless-sync-delay", "0",
	}
	if r.opts.AOF {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		args = append(args, "--appendonly", "no")
	}
	if r.opts.ReplicaOf != "" {
		host, p, err := net.SplitHostPort(r.opts.ReplicaOf)
		if err != nil {
			return fmt.Errorf("procs: ReplicaOf %q is not host:port: %w", r.opts.ReplicaOf, err)
		}
		args = append(args, "--replicaof", host, p)
	}
	cmd := exec.Command(r.bin, args...)
	cmd.Env = append(os.Environ(), r.opts.Env...)
	cmd.Dir = r.Dir
	p, err := testutil.StartProc(filepath.Dir(r.Dir), r.Name, cmd)
	if err != nil {
		return fmt.Errorf("procs: start redis-server %s: %w", r.Name, err)
	}
	r.mu.Lock()
	r.proc = p
	r.mu.Unlock()
	if err := r.waitPing(ctx, p); err != nil {
		p.Kill()
		return err
	}
	return nil
}

func (r *Redis) waitPing(ctx context.Context, p *testutil.Proc) error {
	if err := WaitTCP(ctx, r.Addr, p); err != nil {
		return err
	}
	c := redis.NewClient(&redis.Options{Addr: r.Addr, ContextTimeoutEnabled: true})
	defer c.Close()
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		err := c.Ping(pctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("procs: redis-server %s on %s does not answer PING: %v\n%s", r.Name, r.Addr, err, p.LogTail(2000))
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Proc returns the current process.
func (r *Redis) Proc() *testutil.Proc {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.proc
}

// Kill kills the server with SIGKILL and waits for it.
func (r *Redis) Kill() { r.Proc().Kill() }

// Restart kills the server if it runs and starts it again on the same
// port and directory: without AOF it comes back empty, a node restarted
// without persistence. It starts with the options of its first start, so
// a promoted replica comes back a replica.
func (r *Redis) Restart(ctx context.Context) error {
	r.Kill()
	return r.start(ctx)
}

// Client returns a new client of the server; the caller closes it.
func (r *Redis) Client() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: r.Addr, ContextTimeoutEnabled: true, MaxRetries: -1})
}

// Do runs one command on the server with a fresh connection.
func (r *Redis) Do(ctx context.Context, args ...any) (any, error) {
	c := r.Client()
	defer c.Close()
	return c.Do(ctx, args...).Result()
}

// WaitReplicaSynced waits until this replica's link to its primary is up
// and the initial sync is done.
func (r *Redis) WaitReplicaSynced(ctx context.Context) error {
	c := r.Client()
	defer c.Close()
	var last string
	for {
		info, err := c.Info(ctx, "replication").Result()
		if err == nil && strings.Contains(info, "master_link_status:up") && !strings.Contains(info, "master_sync_in_progress:1") {
			return nil
		}
		last = info
		if err != nil {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("procs: replica %s did not sync with its primary: %s: %w", r.Name, strings.TrimSpace(last), ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Close kills the server.
func (r *Redis) Close() error {
	r.Kill()
	return nil
}
