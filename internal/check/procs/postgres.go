package procs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fencerlock/fencer/internal/testutil"
)

// templateVersion changes when the way the template is made changes.
const templateVersion = "v1"

// Postgres is one PostgreSQL server (the postmaster and its backends),
// with a database "postgres" that the user postgres reaches without a
// password over 127.0.0.1.
type Postgres struct {
	Addr string // 127.0.0.1:port
	dir  string // owned by the server's user: data/ and the socket
	proc *testutil.Proc
}

// PGBaseDir is where the template and the servers' directories live:
// $TMPDIR/fencer-check-pg, traversable by the postgres user.
func PGBaseDir() string { return filepath.Join(os.TempDir(), "fencer-check-pg") }

// StartPostgres starts a PostgreSQL server and waits until it accepts
// connections. initdb runs once per machine and PostgreSQL version; its
// result is kept as a template under PGBaseDir and copied for every
// server. As root, the server runs as the postgres user. logDir gets the
// server's log.
func StartPostgres(ctx context.Context, logDir string) (*Postgres, error) {
	binDir, version, err := pgBinaries()
	if err != nil {
		return nil, err
	}
	cred, err := pgCredential()
	if err != nil {
		return nil, err
	}
	base := PGBaseDir()
	if err := os.MkdirAll(base, 0o755); err != nil {
		return nil, fmt.Errorf("procs: %w", err)
	}
	if err := os.Chmod(base, 0o755); err != nil {
		return nil, fmt.Errorf("procs: %w", err)
	}
	removeOrphanPGDirs(base)
	tmpl, err := pgTemplate(ctx, base, binDir, version, cred)
	if err != nil {
		return nil, fmt.Errorf("procs: prepare the PostgreSQL template: %w", err)
	}
	dir, err := os.MkdirTemp(base, "server-"+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return nil, fmt.Errorf("procs: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(dir)
		}
	}()
	if err := copyTree(tmpl, filepath.Join(dir, "data"), cred); err != nil {
		return nil, fmt.Errorf("procs: copy the PostgreSQL template: %w", err)
	}
	if err := chown(dir, cred); err != nil {
		return nil, err
	}
	addr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	args := []string{"-D", filepath.Join(dir, "data"), "-p", port}
	for _, set := range []string{
		"listen_addresses=127.0.0.1",
		"unix_socket_directories=" + dir,
		"shared_buffers=16MB",
		"max_connections=100",
		"dynamic_shared_memory_type=mmap",
		"logging_collector=off",
		"log_min_messages=warning",
	} {
		args = append(args, "-c", set)
	}
	cmd := pgCommand(binDir, cred, dir, "postgres", args...)
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, fmt.Errorf("procs: %w", err)
	}
	p, err := testutil.StartProc(logDir, "postgres", cmd)
	if err != nil {
		return nil, fmt.Errorf("procs: start postgres: %w", err)
	}
	pg := &Postgres{Addr: addr, dir: dir, proc: p}
	if err := pg.waitReady(ctx); err != nil {
		pg.stop()
		return nil, err
	}
	ok = true
	return pg, nil
}

// URL returns the connection URL of the server's postgres database.
func (pg *Postgres) URL() string { return pg.URLAt(pg.Addr) }

// URLAt returns the connection URL for reaching the server at addr (a
// proxy in front of it).
func (pg *Postgres) URLAt(addr string) string {
	return "postgres://postgres@" + addr + "/postgres?sslmode=disable"
}

func (pg *Postgres) waitReady(ctx context.Context) error {
	if err := WaitTCP(ctx, pg.Addr, pg.proc); err != nil {
		return err
	}
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		conn, err := pgx.Connect(cctx, pg.URL())
		if err == nil {
			err = conn.Ping(cctx)
			conn.Close(cctx)
		}
		cancel()
		if err == nil {
			return nil
		}
		if pg.proc.Exited() || ctx.Err() != nil {
			return fmt.Errorf("procs: postgres on %s does not accept connections: %v\n%s", pg.Addr, errors.Join(err, ctx.Err()), pg.proc.LogTail(3000))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Proc returns the postmaster's process.
func (pg *Postgres) Proc() *testutil.Proc { return pg.proc }

// Close stops the server (an immediate shutdown, SIGQUIT, which frees its
// shared memory), kills it if it does not stop within 5 s, and removes its
// directory.
func (pg *Postgres) Close() error {
	pg.stop()
	return os.RemoveAll(pg.dir)
}

func (pg *Postgres) stop() {
	if pg.proc.Exited() {
		return
	}
	_ = pg.proc.Resume()
	_ = pg.proc.Signal(syscall.SIGQUIT)
	select {
	case <-pg.proc.Done():
	case <-time.After(5 * time.Second):
		for _, pid := range childrenOf(pg.proc.Pid()) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		pg.proc.Kill()
	}
}

// pgBinaries finds the newest /usr/lib/postgresql/*/bin (Debian's layout)
// or postgres on the PATH, and its version line.
func pgBinaries() (dir, version string, err error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int { return pgMajor(b) - pgMajor(a) })
	for _, d := range dirs {
		if fileExists(filepath.Join(d, "postgres")) && fileExists(filepath.Join(d, "initdb")) {
			dir = d
			break
		}
	}
	if dir == "" {
		p, err := LookPath("postgres", "postgresql")
		if err != nil {
			return "", "", err
		}
		dir = filepath.Dir(p)
	}
	out, err := exec.Command(filepath.Join(dir, "postgres"), "--version").Output()
	if err != nil {
		return "", "", fmt.Errorf("procs: %s/postgres --version: %v; apt-get install postgresql (scripts/test installs it)", dir, err)
	}
	return dir, strings.TrimSpace(string(out)), nil
}

func pgMajor(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// pgCredential returns the postgres user's credential when running as
// root (PostgreSQL refuses root), else nil: run as ourselves.
func pgCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("procs: running as root, which PostgreSQL refuses, and there is no postgres user to run it as (%v); apt-get install postgresql creates one", err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
}

func chown(path string, cred *syscall.Credential) error {
	if cred == nil {
		return nil
	}
	if err := os.Lchown(path, int(cred.Uid), int(cred.Gid)); err != nil {
		return fmt.Errorf("procs: %w", err)
	}
	return nil
}

func pgCommand(binDir string, cred *syscall.Credential, dir, name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(binDir, name), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LC_ALL=C", "TZ=UTC")
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	return cmd
}

// pgTemplate returns the template data directory, running initdb if it is
// missing. Processes racing to make it each build their own and rename it
// into place; the losers use the winner's.
func pgTemplate(ctx context.Context, base, binDir, version string, cred *syscall.Credential) (string, error) {
	owner := os.Getuid()
	if cred != nil {
		owner = int(cred.Uid)
	}
	name := fmt.Sprintf("template-%s-uid%d-%s", sanitize(version), owner, templateVersion)
	final := filepath.Join(base, name)
	data := filepath.Join(final, "data")
	if fileExists(filepath.Join(final, "complete")) {
		return data, nil
	}
	tmp, err := os.MkdirTemp(base, "build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if err := chown(tmp, cred); err != nil {
		return "", err
	}
	cmd := pgCommand(binDir, cred, tmp, "initdb", "-D", filepath.Join(tmp, "data"), "-U", "postgres", "--auth=trust",
		"--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions")
	if out, err := runCtx(ctx, cmd); err != nil {
		return "", fmt.Errorf("initdb: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(tmp, "complete"), nil, 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, final); err != nil {
		if fileExists(filepath.Join(final, "complete")) {
			return data, nil
		}
		if err := os.RemoveAll(final); err != nil {
			return "", err
		}
		if err := os.Rename(tmp, final); err != nil {
			return "", err
		}
	}
	return data, nil
}

// runCtx runs cmd, killing it when ctx ends, and returns its output.
func runCtx(ctx context.Context, cmd *exec.Cmd) ([]byte, error) {
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.Bytes(), err
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-done
		return out.Bytes(), ctx.Err()
	}
}

// removeOrphanPGDirs removes the server directories of checker processes
// that died without cleaning up; their servers died with them.
func removeOrphanPGDirs(base string) {
	dirs, _ := filepath.Glob(filepath.Join(base, "server-*-*"))
	for _, d := range dirs {
		pid, err := strconv.Atoi(strings.Split(filepath.Base(d), "-")[1])
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(d)
		}
	}
}

func sanitize(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.':
			b.WriteRune(r)
		case b.Len() > 0 && !strings.HasSuffix(b.String(), "_"):
			b.WriteByte('_')
		}
	}
	return strings.Trim(b.String(), "_")
}

// copyTree copies the directory src to dst, keeping modes, owned by
// cred's user.
func copyTree(src, dst string, cred *syscall.Credential) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if err := os.Mkdir(target, info.Mode().Perm()); err != nil {
				return err
			}
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if err := os.Symlink(link, target); err != nil {
				return err
			}
		default:
			in, err := os.Open(p)
			if err != nil {
				return err
			}
			out, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, info.Mode().Perm())
			if err == nil {
				_, err = io.Copy(out, in)
				err = errors.Join(err, out.Close())
			}
			in.Close()
			if err != nil {
				return err
			}
		}
		return chown(target, cred)
	})
}

// childrenOf returns the processes whose parent is ppid (the postmaster's
// backends).
func childrenOf(ppid int) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) >= 2 && f[1] == strconv.Itoa(ppid) {
			pids = append(pids, pid)
		}
	}
	return pids
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
