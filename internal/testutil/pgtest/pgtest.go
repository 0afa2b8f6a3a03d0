// Package pgtest starts real PostgreSQL servers for tests: each on a free
// 127.0.0.1 port, in its own directory, with trust authentication on
// loopback, killed when the test ends.
//
// initdb takes seconds, so it runs once per machine and PostgreSQL
// version: the initialized directory (with the test database already
// created) is kept as a template in $TMPDIR/fencer-pgtest and copied for
// every server, which then starts in well under a second. Each test
// process checks the template once.
//
// PostgreSQL refuses to run as root. When the tests run as root, the
// servers (and initdb) run as the postgres user that Debian's package
// creates, in directories owned by it.
package pgtest

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
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fencerlock/fencer/internal/testutil"
)

// templateVersion changes whenever the way the template is made changes,
// so that an old template is not reused.
const templateVersion = "v2"

// DefaultDatabase is the database a server has when Options.Database is
// empty.
const DefaultDatabase = "fencer"

// Options configure a server. A nil *Options, or a zero field, means the
// default.
type Options struct {
	// NoFsync turns fsync off. The default keeps it on, so that what a
	// test sees committed is as durable as in production (a kill -9 loses
	// nothing either way; fsync matters for timing and for power loss).
	NoFsync bool

	// Database is the name of the database the server has for the test.
	// Empty means DefaultDatabase.
	Database string

	// Settings are extra server settings, "name=value" each, passed as
	// -c options (e.g. "max_connections=200").
	Settings []string
}

// Server is one PostgreSQL server process. Its methods fail the test that
// started it on error; they are not meant for concurrent use.
type Server struct {
	Port     int
	Dir      string // owned by the server's user: data/ and the Unix socket
	DataDir  string
	Database string
	Proc     *testutil.Proc // the postmaster; replaced by Restart

	t    testing.TB
	opts Options
	bins binaries
	cred *syscall.Credential // nil when not running as root
}

type binaries struct {
	dir     string // holding postgres and initdb
	version string // "postgres (PostgreSQL) 15.18 ..."
}

// template is the once-per-process check (or creation) of the shared
// template directory. Process-wide state is the point of it: every test
// of the process shares the result.
var template struct {
	once sync.Once
	dir  string
	err  error
}

// Start starts a PostgreSQL server for the test and waits until it
// accepts connections. A missing PostgreSQL installation fails the test,
// saying how to install one. The server is stopped, and its directory
// removed, when the test ends.
func Start(t testing.TB, opts *Options) *Server {
	t.Helper()
	s := &Server{t: t}
	if opts != nil {
		s.opts = *opts
	}
	s.Database = s.opts.Database
	if s.Database == "" {
		s.Database = DefaultDatabase
	}
	s.bins = findBinaries(t)
	var err error
	if s.cred, err = serverCredential(); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	template.once.Do(func() {
		removeOrphans()
		template.dir, template.err = ensureTemplate(s.bins, s.cred)
	})
	if template.err != nil {
		t.Fatalf("pgtest: prepare the template data directory: %v", template.err)
	}

	s.Dir, err = os.MkdirTemp(baseDir(), "server-"+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(s.Dir) })
	s.DataDir = filepath.Join(s.Dir, "data")
	if err := copyTree(template.dir, s.DataDir, s.cred); err != nil {
		t.Fatalf("pgtest: copy the template data directory: %v", err)
	}
	if err := chown(s.Dir, s.cred); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	s.Port = testutil.FreePort(t)
	s.start()
	// Registered after the process's own cleanup, so it runs first: a
	// clean shutdown frees the server's shared memory, which a kill -9
	// leaves behind.
	t.Cleanup(s.shutdown)
	if s.Database != DefaultDatabase {
		conn := s.connect(DefaultDatabase)
		defer conn.Close(context.Background())
		if _, err := conn.Exec(context.Background(), "CREATE DATABASE "+pgx.Identifier{s.Database}.Sanitize()); err != nil {
			t.Fatalf("pgtest: create database %q: %v", s.Database, err)
		}
	}
	return s
}

// findBinaries finds the newest /usr/lib/postgresql/*/bin (Debian's
// layout), or postgres on the PATH.
func findBinaries(t testing.TB) binaries {
	t.Helper()
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int { return versionOf(b) - versionOf(a) })
	var dir string
	for _, d := range dirs {
		if fileExists(filepath.Join(d, "postgres")) && fileExists(filepath.Join(d, "initdb")) {
			dir = d
			break
		}
	}
	if dir == "" {
		dir = filepath.Dir(testutil.LookPath(t, "postgres", "postgresql"))
	}
	out, err := exec.Command(filepath.Join(dir, "postgres"), "--version").Output()
	if err != nil {
		t.Fatalf("pgtest: %s/postgres --version: %v; run ./scripts/test, which installs Debian's postgresql, or apt-get install postgresql", dir, err)
	}
	return binaries{dir: dir, version: strings.TrimSpace(string(out))}
}

func versionOf(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// serverCredential returns the postgres user's credential when running as
// root, and nil (run as ourselves) otherwise.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("the tests run as root, which PostgreSQL refuses, and there is no postgres user to run it as (%v); apt-get install postgresql creates one", err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
}

func chown(path string, cred *syscall.Credential) error {
	if cred == nil {
		return nil
	}
	return os.Lchown(path, int(cred.Uid), int(cred.Gid))
}

// baseDir is the shared directory of templates and server directories;
// others may traverse it, so the postgres user can reach its own
// directories inside.
func baseDir() string { return filepath.Join(os.TempDir(), "fencer-pgtest") }

// command returns a command running one of the PostgreSQL binaries as the
// server's user.
func command(bins binaries, cred *syscall.Credential, dir, name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(bins.dir, name), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LC_ALL=C", "TZ=UTC")
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	return cmd
}

// removeOrphans removes the server directories of test processes that
// died without cleaning up (killed, or timed out). Their servers died with
// them (testutil sets a parent-death signal).
func removeOrphans() {
	dirs, _ := filepath.Glob(filepath.Join(baseDir(), "server-*-*"))
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

// ensureTemplate returns the template data directory for these binaries
// and this user, creating it if missing. Several test processes may race
// to create it: each builds its own and renames it into place; the losers
// use the winner's.
func ensureTemplate(bins binaries, cred *syscall.Credential) (string, error) {
	owner := os.Getuid()
	if cred != nil {
		owner = int(cred.Uid)
	}
	name := fmt.Sprintf("template-%s-uid%d-%s", sanitize(bins.version), owner, templateVersion)
	final := filepath.Join(baseDir(), name)
	data := filepath.Join(final, "data")
	if fileExists(filepath.Join(final, "complete")) {
		return data, nil
	}
	if err := os.MkdirAll(baseDir(), 0o755); err != nil {
		return "", err
	}
	if err := os.Chmod(baseDir(), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(baseDir(), "build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if err := chown(tmp, cred); err != nil {
		return "", err
	}
	tmpData := filepath.Join(tmp, "data")
	cmd := command(bins, cred, tmp, "initdb", "-D", tmpData, "-U", "postgres", "--auth=trust",
		"--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions", "--wal-segsize=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("initdb: %v\n%s", err, out)
	}
	// Rename the postgres database to the default one now, once, in
	// single-user mode (no network, no fsync), instead of creating it in
	// every server: it costs nothing, and every database is a few hundred
	// files for each server to copy.
	cmd = command(bins, cred, tmp, "postgres", "--single", "-D", tmpData, "-F", "-c", "fsync=off", "template1")
	cmd.Stdin = strings.NewReader("ALTER DATABASE postgres RENAME TO " + DefaultDatabase + ";\n")
	if out, err := cmd.CombinedOutput(); err != nil || bytes.Contains(out, []byte("ERROR")) {
		return "", fmt.Errorf("create the %s database: %v\n%s", DefaultDatabase, err, out)
	}
	if err := os.WriteFile(filepath.Join(tmp, "complete"), nil, 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, final); err != nil {
		if fileExists(filepath.Join(final, "complete")) {
			return data, nil // another process won the race
		}
		// A broken leftover (no marker): replace it.
		if err := os.RemoveAll(final); err != nil {
			return "", err
		}
		if err := os.Rename(tmp, final); err != nil {
			return "", err
		}
	}
	return data, nil
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

// copyTree copies the directory src to dst, keeping modes, owned by cred's
// user.
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
			if err := copyFile(p, target, info.Mode().Perm()); err != nil {
				return err
			}
		}
		return chown(target, cred)
	})
}

func copyFile(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// start starts the postmaster on s.Port and waits until it accepts
// connections to the default database.
func (s *Server) start() {
	t := s.t
	t.Helper()
	fsync := "on"
	if s.opts.NoFsync {
		fsync = "off"
	}
	args := []string{"-D", s.DataDir, "-p", strconv.Itoa(s.Port)}
	for _, set := range append([]string{
		"listen_addresses=127.0.0.1",
		"unix_socket_directories=" + s.Dir,
		"fsync=" + fsync,
		"shared_buffers=16MB",
		"max_connections=100",
		// mmap files in the data directory, not /dev/shm, so that a
		// killed server leaves nothing behind outside its directory.
		"dynamic_shared_memory_type=mmap",
		"min_wal_size=4MB",
		"max_wal_size=64MB",
		"logging_collector=off",
		"log_min_messages=warning",
	}, s.opts.Settings...) {
		args = append(args, "-c", set)
	}
	cmd := command(s.bins, s.cred, s.Dir, "postgres", args...)
	s.Proc = testutil.Start(t, "postgres-"+strconv.Itoa(s.Port), cmd)
	testutil.WaitTCP(t, s.Addr(), 30*time.Second, s.Proc)
	conn := s.connect(DefaultDatabase)
	conn.Close(context.Background())
}

// connect connects to db, retrying while the server is starting up.
func (s *Server) connect(db string) *pgx.Conn {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		conn, err := pgx.Connect(ctx, s.url(db))
		if err == nil {
			err = conn.Ping(ctx)
			if err != nil {
				conn.Close(ctx)
			}
		}
		cancel()
		if err == nil {
			return conn
		}
		if s.Proc.Exited() || time.Now().After(deadline) {
			s.t.Fatalf("pgtest: %s does not accept connections: %v\n%s", s, err, s.Proc.LogTail(3000))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Addr returns "127.0.0.1:PORT".
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) }

// URL returns the connection URL of the test's database:
// postgres://postgres@127.0.0.1:PORT/DB?sslmode=disable.
func (s *Server) URL() string { return s.url(s.Database) }

func (s *Server) url(db string) string {
	return "postgres://postgres@" + s.Addr() + "/" + db + "?sslmode=disable"
}

// Pool returns a connection pool to the test's database, closed when t
// ends. Use pgxpool.ParseConfig(s.URL()) for a pool of another size.
func (s *Server) Pool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	p, err := pgxpool.New(context.Background(), s.URL())
	if err != nil {
		t.Fatalf("pgtest: pool for %s: %v", s, err)
	}
	t.Cleanup(p.Close)
	return p
}

// children returns the server processes forked by the postmaster
// (backends, background workers). They are not in the postmaster's process
// group: each calls setsid.
func (s *Server) children() []int {
	ppid := s.Proc.Pid()
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, ok := procStat(pid); ok && st.ppid == ppid {
			pids = append(pids, pid)
		}
	}
	return pids
}

type stat struct {
	state byte
	ppid  int
}

// procStat reads the state and parent of a process from /proc/PID/stat.
func procStat(pid int) (stat, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return stat{}, false
	}
	i := bytes.LastIndexByte(b, ')') // the command name may hold anything
	if i < 0 {
		return stat{}, false
	}
	f := strings.Fields(string(b[i+1:])) // state ppid ...
	if len(f) < 2 {
		return stat{}, false
	}
	ppid, _ := strconv.Atoi(f[1])
	return stat{state: f[0][0], ppid: ppid}, true
}

// Pause stops the whole server (postmaster and backends) with SIGSTOP: its
// connections stay open and nothing answers.
func (s *Server) Pause() {
	s.t.Helper()
	if err := s.Proc.Pause(); err != nil { // first, so it forks no more
		s.t.Fatalf("pgtest: pause %s: %v", s, err)
	}
	for _, pid := range s.children() {
		syscall.Kill(pid, syscall.SIGSTOP)
	}
}

// Resume continues a paused server.
func (s *Server) Resume() {
	s.t.Helper()
	for _, pid := range s.children() {
		syscall.Kill(pid, syscall.SIGCONT)
	}
	if err := s.Proc.Resume(); err != nil {
		s.t.Fatalf("pgtest: resume %s: %v", s, err)
	}
}

// Kill kills the server and its backends with SIGKILL and waits until they
// are gone: a crash. Committed transactions survive it; Restart recovers
// them.
func (s *Server) Kill() {
	if s.Proc.Exited() {
		return
	}
	s.Proc.Pause() // so it forks no more while its children are killed
	kids := s.children()
	for _, pid := range kids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	s.Proc.Kill()
	// The backends are not our children; wait until they are dead, so a
	// restart does not find them still attached to the shared memory.
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range kids {
		for {
			st, ok := procStat(pid)
			if !ok || st.state == 'Z' || st.state == 'X' || time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// Restart kills the server with SIGKILL, if it is running, and starts it
// again on the same port and data directory: it comes back after crash
// recovery with everything committed before the kill.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	s.start()
}

// shutdown stops the server at the end of the test: SIGQUIT (immediate
// shutdown) lets the postmaster free its System V shared memory; after a
// kill -9 it frees it itself.
func (s *Server) shutdown() {
	if !s.Proc.Exited() {
		for _, pid := range s.children() {
			syscall.Kill(pid, syscall.SIGCONT)
		}
		s.Proc.Resume()
		s.Proc.Signal(syscall.SIGQUIT)
		select {
		case <-s.Proc.Done():
		case <-time.After(5 * time.Second):
		}
		s.Kill()
	}
	s.removeSharedMemory()
}

// removeSharedMemory removes the System V shared memory segment named in
// postmaster.pid, which a postmaster killed with SIGKILL leaves behind
// (and a cleanly stopped one removes, along with the file).
func (s *Server) removeSharedMemory() {
	b, err := os.ReadFile(filepath.Join(s.DataDir, "postmaster.pid"))
	if err != nil {
		return
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 7 {
		return
	}
	f := strings.Fields(lines[6]) // "key shmid"
	if len(f) != 2 {
		return
	}
	if id, err := strconv.Atoi(f[1]); err == nil && id >= 0 {
		const ipcRMID = 0
		syscall.Syscall(syscall.SYS_SHMCTL, uintptr(id), ipcRMID, 0)
	}
}

// String returns "postgres 127.0.0.1:PORT".
func (s *Server) String() string { return "postgres " + s.Addr() }
