package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	raftwal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"

	"github.com/fencerlock/fencer/internal/api/fencerv1"
	"github.com/fencerlock/fencer/internal/lockstate"
	"github.com/fencerlock/fencer/internal/rpcclient"
)

// Server is one fencer server node. Start it with Start and stop it with
// Close. It is safe for concurrent use.
type Server struct {
	cfg Config
	log *slog.Logger

	raft     *raft.Raft
	raftDown chan struct{} // closed once Raft has shut down
	fsm      *fsm
	notifyCh chan bool
	stores   []io.Closer
	trans    raft.Transport

	ln      net.Listener
	http    *http.Server
	connsMu sync.Mutex
	conns   map[net.Conn]struct{} // open native connections; nil once closing
	addr    string                // advertised client API address
	waiters *waiters
	prop    *proposer
	verifier
	lead leadership

	cancel context.CancelFunc
	wg     sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// Start starts a node: it opens (or creates) the data directory, starts
// Raft, bootstraps or joins a cluster when the directory is new, and serves
// the client API. It returns once the node serves; with Join, once the
// cluster has accepted it. ctx bounds the start-up only.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	cfg.fill()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger.With("node", cfg.NodeID), waiters: newWaiters(), notifyCh: make(chan bool, 16), raftDown: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	s.addr = cfg.AdvertiseAddr
	if !cfg.NoClientAPI {
		ln, err := net.Listen("tcp", cfg.ListenAddr)
		if err != nil {
			return nil, fmt.Errorf("listen for clients on %s: %w", cfg.ListenAddr, err)
		}
		s.ln = ln
		if s.addr == "" {
			s.addr = ln.Addr().String()
		}
	}
	existing, err := s.startRaft()
	if err != nil {
		return nil, err
	}
	s.verifier.r, s.verifier.down = s.raft, s.raftDown
	s.prop = newProposer(s.raft, s.raftDown)

	var bg context.Context
	bg, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.watchLeadership(bg)
	}()
	if s.ln != nil {
		// One port: the native protocol and HTTP (gRPC and JSON).
		m := newMux(s.ln)
		s.conns = make(map[net.Conn]struct{})
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			m.serve(&s.wg, s.serveNative)
		}()
		s.http = &http.Server{Handler: s.handler(), ReadHeaderTimeout: 10 * time.Second}
		s.http.Protocols = new(http.Protocols)
		s.http.Protocols.SetHTTP1(true)
		s.http.Protocols.SetUnencryptedHTTP2(true)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := s.http.Serve(m); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				s.log.Error("client API stopped", "err", err)
			}
		}()
	}

	switch {
	case existing:
		s.log.Info("restarted from existing state", "dir", cfg.DataDir)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.reRegister(bg)
		}()
	case cfg.Join != "":
		if err := s.joinCluster(ctx); err != nil {
			return nil, err
		}
	case cfg.Bootstrap:
		f := s.raft.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{
			Suffrage: raft.Voter, ID: raft.ServerID(cfg.NodeID), Address: s.trans.LocalAddr(),
		}}})
		if err := f.Error(); err != nil {
			return nil, fmt.Errorf("bootstrap: %w", err)
		}
		s.log.Info("bootstrapped a new cluster", "dir", cfg.DataDir)
	default:
		return nil, fmt.Errorf("data dir %s holds no cluster state; give Bootstrap to start a new cluster or Join to join one", cfg.DataDir)
	}
	ok = true
	return s, nil
}

func (s *Server) startRaft() (existing bool, err error) {
	cfg := s.cfg
	hlog := hclog.New(&hclog.LoggerOptions{
		Name:   "raft",
		Level:  hclog.Warn,
		Output: slogWriter{s.log},
	})
	if cfg.Logger.Enabled(context.Background(), slog.LevelDebug) {
		hlog.SetLevel(hclog.Info)
	}
	var logs raft.LogStore
	var stable raft.StableStore
	switch cfg.LogStore {
	case "wal":
		dir := filepath.Join(cfg.DataDir, "raft-wal")
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return false, fmt.Errorf("raft-wal dir: %w", err)
		}
		// The WAL's Close leaves its meta store open and its file locked,
		// so the server owns the meta store and closes it after the WAL.
		meta := &metadb.BoltMetaDB{}
		w, err := raftwal.Open(dir, raftwal.WithMetaStore(meta))
		if err != nil {
			meta.Close()
			return false, fmt.Errorf("open raft-wal log in %s: %w", cfg.DataDir, err)
		}
		s.stores = append(s.stores, w, meta)
		logs, stable = w, w
	case "bolt":
		b, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(cfg.DataDir, "raft.db")})
		if err != nil {
			return false, fmt.Errorf("open raft-boltdb log in %s: %w", cfg.DataDir, err)
		}
		s.stores = append(s.stores, b)
		logs, stable = b, b
	case "memory":
		m := raft.NewInmemStore()
		logs, stable = m, m
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, 2, hlog)
	if err != nil {
		return false, fmt.Errorf("snapshot store in %s: %w", cfg.DataDir, err)
	}
	if cfg.Transport != nil {
		s.trans = cfg.Transport
	} else {
		var adv net.Addr
		if cfg.RaftAdvertiseAddr != "" {
			if adv, err = net.ResolveTCPAddr("tcp", cfg.RaftAdvertiseAddr); err != nil {
				return false, fmt.Errorf("raft advertise address %s: %w", cfg.RaftAdvertiseAddr, err)
			}
		}
		tc := &raft.NetworkTransportConfig{MaxPool: 8, Timeout: 10 * time.Second, Logger: hlog}
		if len(cfg.RaftPeerAddrs) > 0 {
			tc.ServerAddressProvider = peerAddrs(cfg.RaftPeerAddrs)
		}
		t, err := raft.NewTCPTransportWithConfig(cfg.RaftAddr, adv, tc)
		if err != nil {
			return false, fmt.Errorf("listen for raft on %s: %w", cfg.RaftAddr, err)
		}
		s.trans = t
		s.stores = append(s.stores, t)
	}
	existing, err = raft.HasExistingState(logs, stable, snaps)
	if err != nil {
		return false, fmt.Errorf("read raft state in %s: %w", cfg.DataDir, err)
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.HeartbeatTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.MaxAppendEntries = cfg.MaxAppendEntries
	rc.BatchApplyCh = true
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.TrailingLogs = max(cfg.SnapshotThreshold, 10240)
	rc.NotifyCh = s.notifyCh
	rc.Logger = hlog
	rc.NoLegacyTelemetry = true
	s.fsm = newFSM(s.onEvents)
	r, err := raft.NewRaft(rc, s.fsm, logs, stable, snaps, s.trans)
	if err != nil {
		return false, fmt.Errorf("start raft: %w", err)
	}
	s.raft = r
	return existing, nil
}

// joinCluster asks the cluster at cfg.Join to add this node, following
// redirects to the leader and retrying until ctx ends.
func (s *Server) joinCluster(ctx context.Context) error {
	conn := rpcclient.New(rpcclient.Config{Endpoints: []string{s.cfg.Join}})
	defer conn.Close()
	req := &fencerv1.JoinRequest{Id: s.cfg.NodeID, RaftAddress: string(s.trans.LocalAddr()), ClientAddress: s.addr}
	for {
		_, err := conn.Join(ctx, req)
		if err == nil {
			s.log.Info("joined the cluster", "via", s.cfg.Join)
			return nil
		}
		if rpcclient.IsPermanent(err) {
			return fmt.Errorf("join the cluster at %s: %w", s.cfg.Join, err)
		}
		s.log.Debug("join failed; retrying", "via", s.cfg.Join, "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("join the cluster at %s: %w", s.cfg.Join, errors.Join(err, ctx.Err()))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// reRegister makes sure, after a restart, that the cluster knows this node's
// current client address (it may listen on a new port). The leader does
// this for itself; a follower asks the leader.
func (s *Server) reRegister(ctx context.Context) {
	for {
		var have string
		s.fsm.read(func(m *lockstate.Machine, _ uint64) { have, _ = m.Member(s.cfg.NodeID) })
		if have == s.addr {
			return
		}
		_, leaderID := s.raft.LeaderWithID()
		if leaderID != "" && leaderID != raft.ServerID(s.cfg.NodeID) {
			var leaderAddr string
			s.fsm.read(func(m *lockstate.Machine, _ uint64) { leaderAddr, _ = m.Member(string(leaderID)) })
			if leaderAddr != "" {
				conn := rpcclient.New(rpcclient.Config{Endpoints: []string{leaderAddr}})
				rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := conn.Join(rctx, &fencerv1.JoinRequest{Id: s.cfg.NodeID, RaftAddress: string(s.trans.LocalAddr()), ClientAddress: s.addr})
				cancel()
				conn.Close()
				if err == nil {
					return
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// Addr returns the client API address this node advertises.
func (s *Server) Addr() string { return s.addr }

// RaftAddr returns the Raft address this node advertises.
func (s *Server) RaftAddr() string { return string(s.trans.LocalAddr()) }

// NodeID returns the node's ID.
func (s *Server) NodeID() string { return s.cfg.NodeID }

// IsLeader reports whether this node leads and has caught up.
func (s *Server) IsLeader() bool { return s.checkLeader() == nil }

// Leader returns the leader's node ID, or "" if none is known.
func (s *Server) Leader() string {
	_, id := s.raft.LeaderWithID()
	return string(id)
}

// StateHash returns a digest of the replicated state and the index of the
// last entry it includes, for comparing replicas.
func (s *Server) StateHash() (hash uint64, applied uint64) {
	s.fsm.read(func(m *lockstate.Machine, a uint64) { hash, applied = m.Hash(), a })
	return hash, applied
}

// Close stops the node: it stops serving, ends waiting calls (their clients
// retry on the next leader), hands leadership over when there are other
// voters, and shuts Raft down. It is safe to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		var errs []error
		if s.raft != nil && s.raft.State() == raft.Leader {
			if cf := s.raft.GetConfiguration(); cf.Error() == nil && len(cf.Configuration().Servers) > 1 {
				_ = s.raft.LeadershipTransfer().Error()
			}
		}
		if s.http != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			s.waiters.failAll()
			s.closeConns()
			if err := s.http.Shutdown(ctx); err != nil {
				s.http.Close()
			}
			cancel()
		} else if s.ln != nil {
			s.ln.Close()
		}
		if s.raft != nil {
			errs = append(errs, s.raft.Shutdown().Error())
			close(s.raftDown)
		}
		if s.prop != nil {
			s.prop.close()
		}
		if s.cancel != nil {
			s.cancel()
		}
		s.wg.Wait()
		for _, c := range s.stores {
			errs = append(errs, c.Close())
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// slogWriter turns hclog's lines into slog records.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	level := slog.LevelInfo
	switch {
	case strings.Contains(msg, "[ERROR]"):
		level = slog.LevelError
	case strings.Contains(msg, "[WARN]"):
		level = slog.LevelWarn
	}
	w.l.Log(context.Background(), level, msg)
	return len(p), nil
}

// peerAddrs overrides the addresses this node dials for some peers.
type peerAddrs map[string]string

func (p peerAddrs) ServerAddr(id raft.ServerID) (raft.ServerAddress, error) {
	if a, ok := p[string(id)]; ok {
		return raft.ServerAddress(a), nil
	}
	return "", fmt.Errorf("no override for %s", id)
}
