// Package pgproc runs real PostgreSQL servers on this machine, for tests
// (through pgtest, which adds testing.TB) and for the checker (through
// check/procs): each on a 127.0.0.1 port the caller picks, in a directory
// of its own under BaseDir, with trust authentication on loopback.
//
// initdb takes seconds, so it runs once per machine, PostgreSQL version
// and server user: the initialized data directory, with DefaultDatabase
// already in it, is kept as a template under BaseDir and copied for every
// server, which then starts in well under a second. Processes that race to
// make the template each build their own and rename it into place; the
// losers use the winner's.
//
// PostgreSQL refuses to run as root. As root, initdb and the servers run
// as the postgres user that Debian's package creates, in directories owned
// by it.
//
// A server dies with the process that started it (testutil.StartProc sets
// the parent-death signal); the next Start removes the directories such
// servers leave behind.
package pgproc

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
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fencerlock/fencer/internal/testutil"
)

// templateVersion changes whenever the way the template is made changes,
// so that an old template is not reused.
const templateVersion = "v2"

// DefaultDatabase is the database every server has, and the one a server
// has for its user when Options.Database is empty.
const DefaultDatabase = "fencer"

// Options configure a server. A zero field means the default, as each
// field says; Port and LogDir are required.
type Options struct {
	// Port is the TCP port on 127.0.0.1 the server listens on. Required;
	// Restart keeps it.
	Port int

	// LogDir is the directory the server's log, postgres.log, goes to; it
	// is created if missing. Required. Give every server its own, or their
	// logs interleave.
	LogDir string

	// NoFsync turns fsync off. The default keeps it on, so that what is
	// seen committed is as durable as in production (a kill -9 loses
	// nothing either way; fsync matters for timing and for power loss).
	NoFsync bool

	// Database is the database the server has for its user, created by
	// Start if it is not DefaultDatabase. Empty means DefaultDatabase.
	Database string

	// Settings are extra server settings, "name=value" each, passed as -c
	// options after the defaults, which they override (e.g.
	// "max_connections=200").
	Settings []string

	// ReadyTimeout bounds each wait, in Start and Restart, for the server
	// to accept connections. Zero means that only ctx bounds it.
	ReadyTimeout time.Duration
}

// Server is one PostgreSQL server: the postmaster and the backends it
// forks. Port, Dir, DataDir and Database do not change, and Addr, URL,
// URLAt and String may be called at any time; the other methods must not
// run concurrently with one another. Close it when done.
type Server struct {
	Port     int
	Dir      string // owned by the server's user: data/ and the Unix socket
	DataDir  string
	Database string

	opts Options
	bins binaries
	cred *syscall.Credential // nil when not running as root
	proc *testutil.Proc      // the postmaster; replaced by Restart
}

// BaseDir is the shared directory of templates and server directories,
// $TMPDIR/fencer-pgtest. Others may traverse it, so that the postgres user
// can reach its own directories inside.
func BaseDir() string { return filepath.Join(os.TempDir(), "fencer-pgtest") }

// Start starts a PostgreSQL server and waits until it accepts connections
// to opts.Database, which it creates if need be. ctx bounds the start
// (and the template's creation, if this is the first server), not the
// server. On error nothing is left running; a missing PostgreSQL
// installation is an error that says how to install one.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.Port <= 0 || opts.LogDir == "" {
		return nil, fmt.Errorf("pgproc: Options.Port (%d) and Options.LogDir (%q) are required", opts.Port, opts.LogDir)
	}
	if opts.Database == "" {
		opts.Database = DefaultDatabase
	}
	s := &Server{Port: opts.Port, Database: opts.Database, opts: opts}
	var err error
	if s.bins, err = findBinaries(); err != nil {
		return nil, err
	}
	if s.cred, err = serverCredential(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.LogDir, 0o755); err != nil {
		return nil, fmt.Errorf("pgproc: %w", err)
	}
	removeOrphans()
	tmpl, err := ensureTemplate(ctx, s.bins, s.cred)
	if err != nil {
		return nil, fmt.Errorf("pgproc: prepare the template data directory: %w", err)
	}
	if s.Dir, err = os.MkdirTemp(BaseDir(), "server-"+strconv.Itoa(os.Getpid())+"-"); err != nil {
		return nil, fmt.Errorf("pgproc: %w", err)
	}
	s.DataDir = filepath.Join(s.Dir, "data")
	if err := copyTree(tmpl, s.DataDir, s.cred); err != nil {
		os.RemoveAll(s.Dir)
		return nil, fmt.Errorf("pgproc: copy the template data directory: %w", err)
	}
	if err := chown(s.Dir, s.cred); err != nil {
		os.RemoveAll(s.Dir)
		return nil, fmt.Errorf("pgproc: %w", err)
	}
	if err := s.start(ctx); err != nil {
		return nil, errors.Join(err, s.Close())
	}
	if s.Database != DefaultDatabase {
		if err := s.createDatabase(ctx); err != nil {
			return nil, errors.Join(err, s.Close())
		}
	}
	return s, nil
}

// binaries are the PostgreSQL programs a server runs.
type binaries struct {
	dir     string // holding postgres and initdb
	version string // "postgres (PostgreSQL) 15.18 ..."
}

// findBinaries finds the newest /usr/lib/postgresql/*/bin (Debian's
// layout), or postgres on the PATH or in an sbin directory.
func findBinaries() (binaries, error) {
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
		for _, p := range []string{"postgres", "/usr/sbin/postgres", "/usr/local/sbin/postgres", "/sbin/postgres", "/usr/local/bin/postgres"} {
			if p, err := exec.LookPath(p); err == nil {
				dir = filepath.Dir(p)
				break
			}
		}
	}
	if dir == "" {
		return binaries{}, errors.New("pgproc: PostgreSQL is not installed (no /usr/lib/postgresql/*/bin, no postgres on the PATH): run ./scripts/test, which installs Debian's postgresql, or apt-get install postgresql")
	}
	out, err := exec.Command(filepath.Join(dir, "postgres"), "--version").Output()
	if err != nil {
		return binaries{}, fmt.Errorf("pgproc: %s/postgres --version: %v; run ./scripts/test, which installs Debian's postgresql, or apt-get install postgresql", dir, err)
	}
	return binaries{dir: dir, version: strings.TrimSpace(string(out))}, nil
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
		return nil, fmt.Errorf("pgproc: running as root, which PostgreSQL refuses, and there is no postgres user to run it as (%v); apt-get install postgresql creates one", err)
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

// command returns a command running one of the PostgreSQL binaries as the
// server's user, killed when ctx ends.
func command(ctx context.Context, bins binaries, cred *syscall.Credential, dir, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(bins.dir, name), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LC_ALL=C", "TZ=UTC")
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	return cmd
}

// removeOrphans removes the server directories of processes that died
// without cleaning up (killed, or timed out). Their servers died with them.
func removeOrphans() {
	dirs, _ := filepath.Glob(filepath.Join(BaseDir(), "server-*-*"))
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

// templateMu makes the servers of one process that start together wait
// for one initdb instead of each running its own. (Across processes the
// rename in ensureTemplate decides.)
var templateMu sync.Mutex

// ensureTemplate returns the template data directory for these binaries
// and this user, creating it if missing. Several processes may race to
// create it: each builds its own and renames it into place; the losers use
// the winner's.
func ensureTemplate(ctx context.Context, bins binaries, cred *syscall.Credential) (string, error) {
	templateMu.Lock()
	defer templateMu.Unlock()
	owner := os.Getuid()
	if cred != nil {
		owner = int(cred.Uid)
	}
	name := fmt.Sprintf("template-%s-uid%d-%s", sanitize(bins.version), owner, templateVersion)
	final := filepath.Join(BaseDir(), name)
	data := filepath.Join(final, "data")
	if fileExists(filepath.Join(final, "complete")) {
		return data, nil
	}
	if err := os.MkdirAll(BaseDir(), 0o755); err != nil {
		return "", err
	}
	if err := os.Chmod(BaseDir(), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(BaseDir(), "build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if err := chown(tmp, cred); err != nil {
		return "", err
	}
	tmpData := filepath.Join(tmp, "data")
	cmd := command(ctx, bins, cred, tmp, "initdb", "-D", tmpData, "-U", "postgres", "--auth=trust",
		"--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions", "--wal-segsize=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("initdb: %w\n%s", errors.Join(err, ctx.Err()), out)
	}
	// Rename the postgres database to the default one now, once, in
	// single-user mode (no network, no fsync), instead of creating it in
	// every server: it costs nothing, and every database is a few hundred
	// files for each server to copy.
	cmd = command(ctx, bins, cred, tmp, "postgres", "--single", "-D", tmpData, "-F", "-c", "fsync=off", "template1")
	cmd.Stdin = strings.NewReader("ALTER DATABASE postgres RENAME TO " + DefaultDatabase + ";\n")
	if out, err := cmd.CombinedOutput(); err != nil || bytes.Contains(out, []byte("ERROR")) {
		return "", fmt.Errorf("create the %s database: %v\n%s", DefaultDatabase, errors.Join(err, ctx.Err()), out)
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

// start starts the postmaster and waits until it accepts connections to
// the default database.
func (s *Server) start(ctx context.Context) error {
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
		"logging_collector=off",
		"log_min_messages=warning",
	}, s.opts.Settings...) {
		args = append(args, "-c", set)
	}
	// Not ctx: the server outlives the start.
	cmd := command(context.Background(), s.bins, s.cred, s.Dir, "postgres", args...)
	p, err := testutil.StartProc(s.opts.LogDir, "postgres", cmd)
	if err != nil {
		return fmt.Errorf("pgproc: start %s: %w", s, err)
	}
	s.proc = p
	conn, err := s.connect(ctx, DefaultDatabase)
	if err != nil {
		return err
	}
	return conn.Close(ctx)
}

// connect connects to db, retrying while the server is starting up (or
// recovering), for up to Options.ReadyTimeout.
func (s *Server) connect(ctx context.Context, db string) (*pgx.Conn, error) {
	if s.opts.ReadyTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.opts.ReadyTimeout)
		defer cancel()
	}
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		conn, err := pgx.Connect(cctx, s.url(s.Addr(), db))
		if err == nil {
			if err = conn.Ping(cctx); err != nil {
				conn.Close(cctx)
			}
		}
		cancel()
		if err == nil {
			return conn, nil
		}
		if s.proc.Exited() {
			return nil, fmt.Errorf("pgproc: %s exited (%v) before it accepted connections: %v\n%s", s, s.proc.ExitErr(), err, s.proc.LogTail(3000))
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("pgproc: %s does not accept connections: %w\n%s", s, errors.Join(err, ctx.Err()), s.proc.LogTail(3000))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// createDatabase creates s.Database.
func (s *Server) createDatabase(ctx context.Context) error {
	conn, err := s.connect(ctx, DefaultDatabase)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{s.Database}.Sanitize()); err != nil {
		return fmt.Errorf("pgproc: create database %q on %s: %w", s.Database, s, err)
	}
	return nil
}

// Proc returns the postmaster's process. Restart replaces it.
func (s *Server) Proc() *testutil.Proc { return s.proc }

// Addr returns "127.0.0.1:PORT".
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) }

// URL returns the connection URL of the server's database:
// postgres://postgres@127.0.0.1:PORT/DATABASE?sslmode=disable.
func (s *Server) URL() string { return s.URLAt(s.Addr()) }

// URLAt returns the connection URL of the server's database for reaching
// the server at addr (a proxy in front of it).
func (s *Server) URLAt(addr string) string { return s.url(addr, s.Database) }

func (s *Server) url(addr, db string) string {
	return "postgres://postgres@" + addr + "/" + db + "?sslmode=disable"
}

// String returns "postgres 127.0.0.1:PORT".
func (s *Server) String() string { return "postgres " + s.Addr() }

// children returns the server processes forked by the postmaster
// (backends, background workers). They are not in the postmaster's
// process group: each calls setsid.
func (s *Server) children() []int {
	ppid := s.proc.Pid()
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
func (s *Server) Pause() error {
	if err := s.proc.Pause(); err != nil { // first, so it forks no more
		return fmt.Errorf("pgproc: pause %s: %w", s, err)
	}
	for _, pid := range s.children() {
		syscall.Kill(pid, syscall.SIGSTOP)
	}
	return nil
}

// Resume continues a paused server.
func (s *Server) Resume() error {
	for _, pid := range s.children() {
		syscall.Kill(pid, syscall.SIGCONT)
	}
	if err := s.proc.Resume(); err != nil {
		return fmt.Errorf("pgproc: resume %s: %w", s, err)
	}
	return nil
}

// Kill kills the server and its backends with SIGKILL and waits until they
// are gone: a crash. Committed transactions survive it; Restart recovers
// them.
func (s *Server) Kill() {
	if s.proc.Exited() {
		return
	}
	s.proc.Pause() // so it forks no more while its children are killed
	kids := s.children()
	for _, pid := range kids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	s.proc.Kill()
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
// recovery with everything committed before the kill. ctx bounds the
// start.
func (s *Server) Restart(ctx context.Context) error {
	s.Kill()
	return s.start(ctx)
}

// Close stops the server and removes its directory. It stops it with
// SIGQUIT (an immediate shutdown), which lets the postmaster free its
// System V shared memory, and kills it if it has not exited within 5 s;
// after a kill -9 it frees that memory itself. It returns the error of
// the directory's removal.
func (s *Server) Close() error {
	if s.proc != nil {
		if !s.proc.Exited() {
			for _, pid := range s.children() {
				syscall.Kill(pid, syscall.SIGCONT)
			}
			s.proc.Resume()
			s.proc.Signal(syscall.SIGQUIT)
			select {
			case <-s.proc.Done():
			case <-time.After(5 * time.Second):
			}
			s.Kill()
		}
		s.removeSharedMemory()
	}
	if err := os.RemoveAll(s.Dir); err != nil {
		return fmt.Errorf("pgproc: remove the directory of %s: %w", s, err)
	}
	return nil
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
