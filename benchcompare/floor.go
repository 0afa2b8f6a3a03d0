package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// floor is the physical floor of this machine: what one durable write and
// one loopback round trip between two processes cost. A durable,
// replicated grant cannot beat one fsync plus two round trips.
type floor struct {
	FsyncP50, FsyncP99 time.Duration // write of 4 KiB appended to a file + fdatasync
	RTTP50, RTTP99     time.Duration // 1-byte TCP ping-pong with another process over loopback
	FsyncDir           string
}

// measureFloor measures fdatasync in dir and the loopback round trip to a
// child process (this program run as an echo server).
func measureFloor(ctx context.Context, dir string) (floor, error) {
	f := floor{FsyncDir: dir}
	var err error
	if f.FsyncP50, f.FsyncP99, err = measureFsync(dir, 300); err != nil {
		return f, fmt.Errorf("measure fsync: %w", err)
	}
	if f.RTTP50, f.RTTP99, err = measureRTT(ctx, 5000); err != nil {
		return f, fmt.Errorf("measure the loopback round trip: %w", err)
	}
	return f, nil
}

func measureFsync(dir string, n int) (p50, p99 time.Duration, err error) {
	path := filepath.Join(dir, "fsync-probe")
	file, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_TRUNC, 0o644)
	if err != nil {
		return 0, 0, err
	}
	defer os.Remove(path)
	defer file.Close()
	block := make([]byte, 4096)
	var ds []time.Duration
	for i := range n + 20 {
		t0 := time.Now()
		if _, err := file.Write(block); err != nil {
			return 0, 0, err
		}
		if err := syscall.Fdatasync(int(file.Fd())); err != nil {
			return 0, 0, err
		}
		if i >= 20 { // the first ones allocate the file's first extents
			ds = append(ds, time.Since(t0))
		}
	}
	return percentile(ds, 50), percentile(ds, 99), nil
}

// echoArg makes this program an echo server: it listens on a loopback
// port, prints the port, and echoes bytes until stdin closes.
const echoArg = "__echo"

func runEcho() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(ln.Addr().(*net.TCPAddr).Port)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go io.Copy(c, c)
		}
	}()
	io.Copy(io.Discard, os.Stdin) // until the parent closes stdin or dies
	return 0
}

func measureRTT(ctx context.Context, n int) (p50, p99 time.Duration, err error) {
	self, err := os.Executable()
	if err != nil {
		return 0, 0, err
	}
	cmd := exec.CommandContext(ctx, self, echoArg)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return 0, 0, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	defer func() {
		stdin.Close()
		cmd.Wait()
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		return 0, 0, fmt.Errorf("echo server: %w", err)
	}
	port, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		return 0, 0, fmt.Errorf("echo server printed %q", line)
	}
	c, err := net.Dial("tcp", loopback(port))
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	buf := []byte{1}
	var ds []time.Duration
	for i := range n + 100 {
		t0 := time.Now()
		if _, err := c.Write(buf); err != nil {
			return 0, 0, err
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			return 0, 0, err
		}
		if i >= 100 {
			ds = append(ds, time.Since(t0))
		}
	}
	return percentile(ds, 50), percentile(ds, 99), nil
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}

// machine describes the computer the comparison ran on.
type machine struct {
	CPU, Kernel, OS, Memory, Go, FS string
	Cores                           int
	Load                            string
}

func describeMachine(dataDir string) machine {
	m := machine{Cores: runtime.NumCPU(), Go: runtime.Version(), CPU: "unknown", Kernel: "unknown", OS: "unknown", Memory: "unknown"}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		var model, mhz string
		for _, l := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(l, ":")
			switch k = strings.TrimSpace(k); {
			case !ok:
			case k == "model name" && model == "":
				model = strings.TrimSpace(v)
			case k == "cpu MHz" && mhz == "":
				mhz = strings.TrimSpace(v)
			}
		}
		if model != "" {
			m.CPU = model
			if f, err := strconv.ParseFloat(mhz, 64); err == nil {
				m.CPU += fmt.Sprintf(" at %.0f MHz", f)
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
				m.OS = strings.Trim(v, `"`)
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
				kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
				m.Memory = fmt.Sprintf("%.1f GiB", kb/(1<<20))
			}
		}
	}
	m.FS = filesystemOf(dataDir)
	m.Load = loadAverage()
	return m
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// filesystemOf returns "device type" of the mount holding dir.
func filesystemOf(dir string) string {
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		return "unknown"
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "unknown"
	}
	best, desc := -1, "unknown"
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 3 {
			continue
		}
		mp := f[1]
		if (abs == mp || strings.HasPrefix(abs, strings.TrimSuffix(mp, "/")+"/")) && len(mp) > best {
			best, desc = len(mp), f[2]+" on "+f[0]
		}
	}
	return desc
}
