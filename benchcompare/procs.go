package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// proc is a server process started for the comparison. Its output goes to
// a log file. It runs in a process group of its own, and dies with this
// program through the parent-death signal even if this program is killed.
type proc struct {
	name    string
	cmd     *exec.Cmd
	log     string
	stopSig syscall.Signal // asks it to exit cleanly: SIGTERM, or SIGINT for PostgreSQL's fast shutdown

	done    chan struct{}
	mu      sync.Mutex
	waitErr error
}

// startProc starts cmd with its output in dir/name.log.
func startProc(dir, name string, cmd *exec.Cmd) (*proc, error) {
	logPath := filepath.Join(dir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = f, f
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	cmd.SysProcAttr.Setpgid = true
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, cmd.Path, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, stopSig: syscall.SIGTERM, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		f.Close()
		p.mu.Lock()
		p.waitErr = err
		p.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) exitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waitErr
}

// stop asks the process to exit, waits up to grace, then kills its whole
// process group. It returns once the process is gone.
func (p *proc) stop(grace time.Duration) {
	if p.exited() {
		return
	}
	pid := p.cmd.Process.Pid
	_ = syscall.Kill(pid, p.stopSig)
	select {
	case <-p.done:
	case <-time.After(grace):
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	_ = syscall.Kill(pid, syscall.SIGKILL)
	<-p.done
}

// logTail returns the last n bytes of the process's log.
func (p *proc) logTail(n int) string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return ""
	}
	if len(b) > n {
		b = b[len(b)-n:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(b)
}

// failed wraps err with the tail of the process's log.
func (p *proc) failed(err error) error {
	state := "running"
	if p.exited() {
		state = fmt.Sprintf("exited: %v", p.exitErr())
	}
	return fmt.Errorf("%s (%s): %w; its log %s ends:\n%s", p.name, state, err, p.log, p.logTail(1500))
}

// freePort returns a loopback TCP port that was free a moment ago. It is
// never one of the servers' default ports, so a server installed on this
// machine is never reached by mistake.
func freePort() (int, error) {
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("find a free loopback port: %w", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		switch port {
		case 6379, 5432, 2379, 2380, 2181, 2888, 3888, 7700, 7701, 8080:
			continue
		}
		return port, nil
	}
	return 0, errors.New("find a free loopback port: only default ports came back")
}

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// waitFor calls check every 20ms until it returns nil, ctx ends, timeout
// passes or p exits, and returns the last error with p's log.
func waitFor(ctx context.Context, p *proc, timeout time.Duration, what string, check func(ctx context.Context) error) error {
	deadline := time.Now().Add(timeout)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		err := check(cctx)
		cancel()
		if err == nil {
			return nil
		}
		switch {
		case ctx.Err() != nil:
			return errors.Join(err, ctx.Err())
		case p != nil && p.exited():
			return p.failed(fmt.Errorf("exited before %s: %w", what, err))
		case time.Now().After(deadline):
			if p != nil {
				return p.failed(fmt.Errorf("not %s within %v: %w", what, timeout, err))
			}
			return fmt.Errorf("not %s within %v: %w", what, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dialCheck returns a check that addr accepts TCP connections.
func dialCheck(addr string) func(context.Context) error {
	return func(ctx context.Context) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	}
}
