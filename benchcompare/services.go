package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/backends"
	"github.com/fencerlock/fencer/internal/pgproc"
	"github.com/fencerlock/fencer/internal/testutil"
)

// The services the systems under test need; env.start starts each once.
const (
	svcRedis    = "redis"     // one redis-server, no persistence
	svcRedisAOF = "redis-aof" // one redis-server, appendonly yes, appendfsync always
	svcRedis5   = "redis×5"   // five independent masters for Redlock
	svcFencer1  = "fencer×1"  // a one-node fencer server
	svcFencer3  = "fencer×3"  // a three-node fencer cluster
	svcPostgres = "postgres"
	svcEtcd1    = "etcd×1"
	svcEtcd3    = "etcd×3"
	svcZK       = "zookeeper×1"
)

// env is every server the comparison started, on loopback, in one
// temporary directory. close stops them all and removes the directory.
type env struct {
	dir       string
	fencerBin string
	logf      func(format string, a ...any)

	stops   []func() // in start order
	started map[string]bool

	redis, redisAOF string   // host:port
	redis5          []string // host:port of the five masters
	fencer1         string   // fencer:// URL
	fencer3         string
	pgURL           string
	etcd1, etcd3    []string // client URLs
	zk              string   // host:port

	versions map[string]string // service → version string
}

func newEnv(baseDir, fencerBin string, logf func(string, ...any)) (*env, error) {
	dir, err := os.MkdirTemp(baseDir, "fencer-benchcompare-")
	if err != nil {
		return nil, err
	}
	// Others must traverse it: PostgreSQL runs as the postgres user.
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &env{dir: dir, fencerBin: fencerBin, logf: logf, started: map[string]bool{}, versions: map[string]string{}}, nil
}

// close stops every server, the last started first, and removes the
// directory.
func (e *env) close() {
	for i := len(e.stops) - 1; i >= 0; i-- {
		e.stops[i]()
	}
	e.stops = nil
	if err := os.RemoveAll(e.dir); err != nil {
		e.logf("benchcompare: remove %s: %v", e.dir, err)
	}
}

// add has close stop p: SIGTERM, and SIGKILL after 10s.
func (e *env) add(p *testutil.Proc) {
	e.stops = append(e.stops, func() { _ = p.Stop(10 * time.Second) })
}

func (e *env) subdir(name string) (string, error) {
	d := filepath.Join(e.dir, name)
	return d, os.MkdirAll(d, 0o755)
}

// start starts the named services that are not running yet.
func (e *env) start(ctx context.Context, services []string) error {
	for _, s := range services {
		if e.started[s] {
			continue
		}
		t0 := time.Now()
		var err error
		switch s {
		case svcRedis:
			e.redis, err = e.startRedis(ctx, "redis", false)
		case svcRedisAOF:
			e.redisAOF, err = e.startRedis(ctx, "redis-aof", true)
		case svcRedis5:
			for i := range 5 {
				var a string
				if a, err = e.startRedis(ctx, fmt.Sprintf("redlock-%d", i+1), false); err != nil {
					break
				}
				e.redis5 = append(e.redis5, a)
			}
		case svcFencer1:
			var addrs []string
			addrs, err = e.startFencer(ctx, "fencer1", 1)
			e.fencer1 = "fencer://" + strings.Join(addrs, ",")
		case svcFencer3:
			var addrs []string
			addrs, err = e.startFencer(ctx, "fencer3", 3)
			e.fencer3 = "fencer://" + strings.Join(addrs, ",")
		case svcPostgres:
			e.pgURL, err = e.startPostgres(ctx)
		case svcEtcd1:
			e.etcd1, err = e.startEtcd(ctx, "etcd1", 1)
		case svcEtcd3:
			e.etcd3, err = e.startEtcd(ctx, "etcd3", 3)
		case svcZK:
			e.zk, err = e.startZooKeeper(ctx)
		default:
			err = fmt.Errorf("unknown service %q", s)
		}
		if err != nil {
			return fmt.Errorf("start %s: %w", s, err)
		}
		e.started[s] = true
		e.logf("benchcompare: %s up in %v", s, time.Since(t0).Round(time.Millisecond))
	}
	return nil
}

func (e *env) startRedis(ctx context.Context, name string, aof bool) (string, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", fmt.Errorf("redis-server not found (%v): run scripts/bench-compare, which installs Debian's redis-server", err)
	}
	if _, ok := e.versions["redis"]; !ok {
		out, _ := exec.Command(bin, "--version").Output()
		e.versions["redis"] = strings.TrimSpace(string(out))
		for _, f := range strings.Fields(string(out)) {
			if v, ok := strings.CutPrefix(f, "v="); ok {
				e.versions["redis"] = "Redis " + v
			}
		}
	}
	dir, err := e.subdir(name)
	if err != nil {
		return "", err
	}
	port, err := freePort()
	if err != nil {
		return "", err
	}
	args := []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir, "--save", "",
		"--daemonize", "no", "--protected-mode", "yes", "--loglevel", "warning", "--maxclients", "10000"}
	if aof {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		args = append(args, "--appendonly", "no")
	}
	p, err := testutil.StartProc(e.dir, name, exec.Command(bin, args...))
	if err != nil {
		return "", err
	}
	e.add(p)
	addr := loopback(port)
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	return addr, waitFor(ctx, p, 10*time.Second, "answering PING", func(ctx context.Context) error { return c.Ping(ctx).Err() })
}

// startFencer starts an n-node fencer cluster of `fencer server`
// processes (fsync on, the default) and returns their client addresses.
func (e *env) startFencer(ctx context.Context, name string, n int) ([]string, error) {
	var addrs []string
	for i := range n {
		dir, err := e.subdir(fmt.Sprintf("%s-n%d", name, i+1))
		if err != nil {
			return nil, err
		}
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		raftPort, err := freePort()
		if err != nil {
			return nil, err
		}
		addr := loopback(port)
		args := []string{"server", "--node-id", fmt.Sprintf("n%d", i+1), "--data-dir", dir,
			"--listen", addr, "--raft-listen", loopback(raftPort)}
		if i == 0 {
			args = append(args, "--bootstrap")
		} else {
			args = append(args, "--join", addrs[0])
		}
		p, err := testutil.StartProc(e.dir, fmt.Sprintf("%s-n%d", name, i+1), exec.Command(e.fencerBin, args...))
		if err != nil {
			return nil, err
		}
		e.add(p)
		if err := waitFor(ctx, p, 30*time.Second, "listening", dialCheck(addr)); err != nil {
			return nil, err
		}
		addrs = append(addrs, addr)
		// A lock granted through the cluster means a leader and, for a
		// joining node, a cluster that took it in.
		url := "fencer://" + strings.Join(addrs, ",")
		if err := waitFor(ctx, p, 30*time.Second, "granting a lock", grantCheck(url)); err != nil {
			return nil, err
		}
	}
	return addrs, nil
}

// grantCheck returns a check that a lock can be taken and released
// through the backend URL.
func grantCheck(url string) func(context.Context) error {
	return func(ctx context.Context) error {
		b, err := backends.Open(ctx, url)
		if err != nil {
			return err
		}
		c := fencer.New(b, nil)
		defer c.Close()
		l, err := c.TryAcquire(ctx, "benchcompare/ready", nil)
		if err != nil {
			return err
		}
		return l.Release(ctx)
	}
}

// startPostgres starts PostgreSQL (pgproc: as the postgres user when run
// as root) with fsync and synchronous commit on.
func (e *env) startPostgres(ctx context.Context) (string, error) {
	port, err := freePort()
	if err != nil {
		return "", err
	}
	srv, err := pgproc.Start(ctx, pgproc.Options{
		Port:         port,
		LogDir:       filepath.Join(e.dir, "postgres"),
		Settings:     []string{"synchronous_commit=on", "max_connections=600", "shared_buffers=128MB"},
		ReadyTimeout: 30 * time.Second,
	})
	if err != nil {
		return "", err
	}
	e.stops = append(e.stops, func() { _ = srv.Close() })
	out, _ := exec.Command(srv.Proc().Cmd.Path, "--version").Output()
	e.versions["postgres"] = strings.TrimSpace(string(out))
	return srv.URL(), nil
}

// startEtcd starts an n-member etcd cluster (Debian's etcd-server; fsync
// on, the default) and returns its client URLs.
func (e *env) startEtcd(ctx context.Context, name string, n int) ([]string, error) {
	bin, err := exec.LookPath("etcd")
	if err != nil {
		return nil, fmt.Errorf("etcd not found (%v): run scripts/bench-compare, which installs Debian's etcd-server", err)
	}
	if _, ok := e.versions["etcd"]; !ok {
		out, _ := exec.Command(bin, "--version").Output()
		first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		e.versions["etcd"] = strings.Replace(first, "etcd Version:", "etcd", 1)
	}
	type member struct{ name, client, peer string }
	var ms []member
	var initial []string
	for i := range n {
		cp, err := freePort()
		if err != nil {
			return nil, err
		}
		pp, err := freePort()
		if err != nil {
			return nil, err
		}
		m := member{fmt.Sprintf("%s-m%d", name, i+1), "http://" + loopback(cp), "http://" + loopback(pp)}
		ms = append(ms, m)
		initial = append(initial, m.name+"="+m.peer)
	}
	var procs []*testutil.Proc
	var urls []string
	for _, m := range ms {
		dir, err := e.subdir(m.name)
		if err != nil {
			return nil, err
		}
		p, err := testutil.StartProc(e.dir, m.name, exec.Command(bin,
			"--name", m.name, "--data-dir", filepath.Join(dir, "data"),
			"--listen-client-urls", m.client, "--advertise-client-urls", m.client,
			"--listen-peer-urls", m.peer, "--initial-advertise-peer-urls", m.peer,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-token", name,
			"--initial-cluster-state", "new", "--logger", "zap", "--log-level", "warn"))
		if err != nil {
			return nil, err
		}
		e.add(p)
		procs = append(procs, p)
		urls = append(urls, m.client)
	}
	c, err := clientv3.New(clientv3.Config{Endpoints: urls, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return urls, waitFor(ctx, procs[0], 30*time.Second, "serving a linearizable read", func(ctx context.Context) error {
		for _, p := range procs {
			if p.Exited() {
				return failed(p, errors.New("exited"))
			}
		}
		_, err := c.Get(ctx, "benchcompare/ready")
		return err
	})
}

// startZooKeeper starts one ZooKeeper server (Debian's zookeeper, run
// with java and a zoo.cfg of its own; fsync on, the default).
func (e *env) startZooKeeper(ctx context.Context) (string, error) {
	java, err := exec.LookPath("java")
	if err != nil {
		return "", fmt.Errorf("java not found (%v): run scripts/bench-compare, which installs Debian's zookeeper and its JRE", err)
	}
	const jar = "/usr/share/java/zookeeper.jar"
	if _, err := os.Stat(jar); err != nil {
		return "", fmt.Errorf("%s not found (%v): run scripts/bench-compare, which installs Debian's zookeeper", jar, err)
	}
	dir, err := e.subdir("zookeeper")
	if err != nil {
		return "", err
	}
	port, err := freePort()
	if err != nil {
		return "", err
	}
	cfg := fmt.Sprintf(`tickTime=2000
dataDir=%s
clientPort=%d
clientPortAddress=127.0.0.1
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=srvr
`, filepath.Join(dir, "data"), port)
	cfgPath := filepath.Join(dir, "zoo.cfg")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return "", err
	}
	// slf4j-simple (a dependency of Debian's package) sends the server's
	// log to its stderr, which goes to the log file.
	cp := jar
	if _, err := os.Stat("/usr/share/java/slf4j-simple.jar"); err == nil {
		cp += ":/usr/share/java/slf4j-simple.jar"
	}
	p, err := testutil.StartProc(e.dir, "zookeeper", exec.Command(java, "-Xms256m", "-Xmx512m", "-cp", cp,
		"org.apache.zookeeper.server.ZooKeeperServerMain", cfgPath))
	if err != nil {
		return "", err
	}
	e.add(p)
	addr := loopback(port)
	// ruok answers as soon as the port is open; srvr only once the server
	// serves requests, and it names the version.
	var version string
	err = waitFor(ctx, p, 60*time.Second, "serving requests", func(ctx context.Context) error {
		reply, err := fourLetterWord(ctx, addr, "srvr")
		if err != nil {
			return err
		}
		first, _, _ := strings.Cut(reply, "\n")
		v, ok := strings.CutPrefix(first, "Zookeeper version: ")
		if !ok {
			return fmt.Errorf("srvr answered %q", first)
		}
		v, _, _ = strings.Cut(v, ",")
		version, _, _ = strings.Cut(v, "-")
		return nil
	})
	if err != nil {
		return "", err
	}
	e.versions["zookeeper"] = "ZooKeeper " + version
	return addr, nil
}

// fourLetterWord sends one of ZooKeeper's four-letter commands and returns
// the whole reply.
func fourLetterWord(ctx context.Context, addr, word string) (string, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if _, err := c.Write([]byte(word)); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	return strings.TrimSpace(string(b)), err
}
