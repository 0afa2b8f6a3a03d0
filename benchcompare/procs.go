package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/fencerlock/fencer/internal/testutil"
)

// failed wraps err with the state of p and the tail of its log.
func failed(p *testutil.Proc, err error) error {
	state := "running"
	if p.Exited() {
		state = fmt.Sprintf("exited: %v", p.ExitErr())
	}
	return fmt.Errorf("%s (%s): %w; its log %s ends:\n%s", p.Name, state, err, p.Log, p.LogTail(1500))
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
func waitFor(ctx context.Context, p *testutil.Proc, timeout time.Duration, what string, check func(ctx context.Context) error) error {
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
		case p != nil && p.Exited():
			return failed(p, fmt.Errorf("exited before %s: %w", what, err))
		case time.Now().After(deadline):
			if p != nil {
				return failed(p, fmt.Errorf("not %s within %v: %w", what, timeout, err))
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
