package procs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/fencerlock/fencer/internal/testutil"
)

// FreeAddr returns "127.0.0.1:PORT" for a TCP port that was free a moment
// ago.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("procs: find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// WaitTCP waits until addr accepts a TCP connection. It fails when ctx
// ends first, or at once when p (if not nil) exits, with p's log tail.
func WaitTCP(ctx context.Context, addr string, p *testutil.Proc) error {
	for {
		d := net.Dialer{Timeout: 200 * time.Millisecond}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		if p != nil && p.Exited() {
			return fmt.Errorf("procs: %s exited before listening on %s: %v\n%s", p.Name, addr, p.ExitErr(), p.LogTail(2000))
		}
		select {
		case <-ctx.Done():
			tail := ""
			if p != nil {
				tail = "\n" + p.LogTail(2000)
			}
			return fmt.Errorf("procs: %s does not accept connections: %w%s", addr, errors.Join(err, ctx.Err()), tail)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// LookPath finds a server program, also in the sbin directories a
// non-login shell may lack, and says how to install it when it is
// missing.
func LookPath(name, debianPackage string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin", "/usr/local/bin"} {
		if p, err := exec.LookPath(dir + "/" + name); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("procs: %s is not installed; apt-get install %s (scripts/test installs it)", name, debianPackage)
}

// ProcState returns the state letter of process pid from /proc/PID/stat:
// 'R' running, 'S' sleeping, 'T' stopped, 'Z' zombie..., or 0 if there is
// no such process.
func ProcState(pid int) byte {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0
	}
	return b[i+2]
}
