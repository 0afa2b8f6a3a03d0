package testutil

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// FreeAddr returns "127.0.0.1:PORT" for a port from FreePort.
func FreeAddr(t testing.TB) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
}

// WaitTCP waits until addr accepts a TCP connection, or fails the test after
// timeout. If p is not nil and exits first, the test fails at once with the
// tail of its log.
func WaitTCP(t testing.TB, addr string, timeout time.Duration, p *Proc) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if p != nil && p.Exited() {
			t.Fatalf("%s exited before listening on %s: %v\n%s", p.Name, addr, p.ExitErr(), p.LogTail(2000))
		}
		if time.Now().After(deadline) {
			msg := ""
			if p != nil {
				msg = p.LogTail(2000)
			}
			t.Fatalf("%s did not accept connections within %v: %v\n%s", addr, timeout, err, msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Proc is a child process started for a test. Its output goes to a log file
// in the test's temporary directory. It is killed when the test ends, and,
// through the parent-death signal, when the test binary dies.
type Proc struct {
	Name string
	Cmd  *exec.Cmd
	Log  string // path of the combined stdout/stderr log

	done    chan struct{}
	mu      sync.Mutex
	waitErr error
}

// Start starts cmd for the test t and registers its cleanup. name labels the
// process in messages. cmd.Stdout, cmd.Stderr and cmd.SysProcAttr are set by
// Start unless already set (SysProcAttr's Pdeathsig and Setpgid are always
// set).
func Start(t testing.TB, name string, cmd *exec.Cmd) *Proc {
	t.Helper()
	p, err := StartProc(t.TempDir(), name, cmd)
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() { p.Kill() })
	return p
}

// StartProc is Start without a testing.TB, for harnesses that outlive a
// test (the checker). The caller must Kill the process.
func StartProc(dir, name string, cmd *exec.Cmd) (*Proc, error) {
	logPath := filepath.Join(dir, sanitize(name)+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	if cmd.Stdout == nil {
		cmd.Stdout = f
	}
	if cmd.Stderr == nil {
		cmd.Stderr = f
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	cmd.SysProcAttr.Setpgid = true
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	p := &Proc{Name: name, Cmd: cmd, Log: logPath, done: make(chan struct{})}
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

func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			b[i] = '_'
		}
	}
	return string(b)
}

// Pid returns the process ID.
func (p *Proc) Pid() int { return p.Cmd.Process.Pid }

// Done returns a channel closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// ExitErr returns the process's exit error once it has exited.
func (p *Proc) ExitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waitErr
}

// Signal sends sig to the process (not its group).
func (p *Proc) Signal(sig syscall.Signal) error {
	if p.Exited() {
		return fmt.Errorf("%s has exited", p.Name)
	}
	return syscall.Kill(p.Pid(), sig)
}

// Pause stops the process with SIGSTOP.
func (p *Proc) Pause() error { return p.Signal(syscall.SIGSTOP) }

// Resume continues a paused process with SIGCONT.
func (p *Proc) Resume() error { return p.Signal(syscall.SIGCONT) }

// Kill kills the process and its group with SIGKILL and waits for it. It is
// safe to call more than once and on an exited process.
func (p *Proc) Kill() {
	if !p.Exited() {
		_ = syscall.Kill(-p.Pid(), syscall.SIGKILL)
		_ = syscall.Kill(p.Pid(), syscall.SIGKILL)
	}
	<-p.done
}

// Stop asks the process to exit with SIGTERM, waits up to grace, then kills
// it. It returns the exit error of a process that exited on its own.
func (p *Proc) Stop(grace time.Duration) error {
	if p.Exited() {
		return p.ExitErr()
	}
	_ = syscall.Kill(p.Pid(), syscall.SIGCONT) // a paused process cannot handle SIGTERM
	_ = syscall.Kill(p.Pid(), syscall.SIGTERM)
	select {
	case <-p.done:
		return p.ExitErr()
	case <-time.After(grace):
		p.Kill()
		return errors.New(p.Name + " did not exit after SIGTERM; killed")
	}
}

// Wait waits up to timeout for the process to exit and returns its exit
// error, or an error if it is still running.
func (p *Proc) Wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.ExitErr()
	case <-time.After(timeout):
		return fmt.Errorf("%s still running after %v", p.Name, timeout)
	}
}

// LogTail returns up to the last n bytes of the process's log.
func (p *Proc) LogTail(n int) string {
	b, err := os.ReadFile(p.Log)
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
