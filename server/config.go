package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"strconv"
	"time"

	"github.com/hashicorp/raft"

	"github.com/fencerlock/fencer"
)

// Config configures a Server. The zero value of every field means its
// default, named in the field's comment; DefaultConfig returns a Config with
// the defaults filled in, which is what `fencer server` with no flags runs.
type Config struct {
	// NodeID names this node in the cluster: 1 to 64 characters of
	// [A-Za-z0-9._-]. It must not change across restarts. Default "node1".
	NodeID string

	// DataDir holds the Raft log, snapshots and the node's identity. A node
	// started again on an existing DataDir rejoins its cluster and needs
	// neither Bootstrap nor Join. Default "./fencer-data".
	DataDir string

	// ListenAddr is where the client API (gRPC and JSON over HTTP) listens.
	// Default "127.0.0.1:7700". Port 0 picks a free port; Server.Addr tells
	// which.
	ListenAddr string

	// NoClientAPI starts the node without a client API listener (ListenAddr
	// is ignored): for in-process simulations that call the node directly
	// and must not block on real network I/O.
	NoClientAPI bool

	// AdvertiseAddr is the client API address other nodes and clients are
	// told to use for this node. Default: the address ListenAddr bound.
	AdvertiseAddr string

	// RaftAddr is where this node listens for Raft traffic from the other
	// nodes. Default "127.0.0.1:7701". Port 0 picks a free port.
	RaftAddr string

	// RaftAdvertiseAddr is the Raft address the other nodes dial. Default:
	// the address RaftAddr bound. A fault-injecting proxy in front of the
	// node is given here.
	RaftAdvertiseAddr string

	// RaftPeerAddrs maps node IDs to the Raft address this node dials for
	// them, instead of the address in the cluster configuration. A fault
	// injector gives each node its own proxy per peer this way. Nil: dial
	// the configured addresses.
	RaftPeerAddrs map[string]string

	// Bootstrap makes this node form a new one-node cluster when its DataDir
	// holds no state. Without Bootstrap or Join, a node with an empty
	// DataDir bootstraps only if it is the embedded default: see
	// DefaultConfig.
	Bootstrap bool

	// Join is the client API address of any member of an existing cluster;
	// a node with an empty DataDir asks it to add this node as a voter.
	Join string

	// LogStore picks the durable Raft log: "wal" (raft-wal) or "bolt"
	// (raft-boltdb/v2). Default "wal"; see the README for the measurements
	// behind the choice. "memory" keeps the log in memory and is for tests.
	LogStore string

	// NoSync turns off fsync of the Raft log. A crash can then lose
	// acknowledged grants, so tokens could repeat: for benchmarks only.
	NoSync bool

	// HeartbeatTimeout is how long a follower waits without hearing from
	// the leader before it starts an election; also the election timeout.
	// Default 1s. Leases are not affected: a new leader restarts every
	// session's TTL.
	HeartbeatTimeout time.Duration

	// LeaderLeaseTimeout is how long a leader keeps serving without contact
	// with a quorum before it steps down. Default HeartbeatTimeout/2; it
	// must not exceed HeartbeatTimeout.
	LeaderLeaseTimeout time.Duration

	// SnapshotThreshold is how many log entries since the last snapshot
	// trigger a new one. Default 16384.
	SnapshotThreshold uint64

	// SnapshotInterval is how often the node checks whether to snapshot.
	// Default 30s.
	SnapshotInterval time.Duration

	// MaxAppendEntries caps how many entries go into one append (and so one
	// fsync) and one replication message. Default 1024.
	MaxAppendEntries int

	// Logger receives the server's and Raft's logs. Nil discards them.
	Logger *slog.Logger

	// Transport replaces the Raft TCP transport; RaftAddr is then ignored.
	// For in-process test clusters (raft.InmemTransport).
	Transport raft.Transport

	// Clock is the leader's source of time for session deadlines and
	// lock-delay. Nil means the monotonic system clock. It decides only
	// when the leader proposes an expiry (liveness), never what the state
	// machine does.
	Clock Clock
}

// Clock is the time source of the leader's session timers.
type Clock interface {
	// Now returns the current time with a monotonic reading.
	Now() time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// Defaults of the embedded default server.
const (
	DefaultNodeID     = "node1"
	DefaultDataDir    = "./fencer-data"
	DefaultListenAddr = "127.0.0.1:7700"
	DefaultRaftAddr   = "127.0.0.1:7701"
)

// DefaultConfig returns the configuration of `fencer server` without flags:
// a one-node cluster with data in ./fencer-data, the client API on
// 127.0.0.1:7700 and Raft on 127.0.0.1:7701, bootstrapped on first start.
func DefaultConfig() Config {
	c := Config{Bootstrap: true}
	c.fill()
	return c
}

func (c *Config) fill() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.NodeID, DefaultNodeID)
	def(&c.DataDir, DefaultDataDir)
	def(&c.ListenAddr, DefaultListenAddr)
	def(&c.RaftAddr, DefaultRaftAddr)
	def(&c.LogStore, "wal")
	if c.HeartbeatTimeout == 0 {
		c.HeartbeatTimeout = time.Second
	}
	if c.LeaderLeaseTimeout == 0 {
		c.LeaderLeaseTimeout = c.HeartbeatTimeout / 2
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = 16384
	}
	if c.SnapshotInterval == 0 {
		c.SnapshotInterval = 30 * time.Second
	}
	if c.MaxAppendEntries == 0 {
		c.MaxAppendEntries = 1024
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = systemClock{}
	}
}

var nodeIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// ValidateNodeID returns an error unless id is 1 to 64 characters of
// [A-Za-z0-9._-].
func ValidateNodeID(id string) error {
	if !nodeIDPattern.MatchString(id) {
		return &fencer.InvalidError{Field: "node ID", Value: id, Accepted: "1 to 64 characters of A-Z, a-z, 0-9, '.', '_' and '-'"}
	}
	return nil
}

// ValidateAddr returns an error unless addr is host:port with a port from 0
// to 65535 (0 only when zeroOK).
func ValidateAddr(what, addr string, zeroOK bool) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return &fencer.InvalidError{Field: what, Value: addr, Accepted: "host:port, e.g. 127.0.0.1:7700"}
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || (p == 0 && !zeroOK) {
		accepted := "a port from 1 to 65535"
		if zeroOK {
			accepted = "a port from 0 (any free port) to 65535"
		}
		return &fencer.InvalidError{Field: what, Value: addr, Reason: "bad port " + strconv.Quote(port), Accepted: accepted}
	}
	return nil
}

// validate checks a filled Config. Errors name the fields and values that
// clash.
func (c *Config) validate() error {
	var errs []error
	if err := ValidateNodeID(c.NodeID); err != nil {
		errs = append(errs, err)
	}
	if err := ValidateAddr("listen address", c.ListenAddr, true); err != nil && !c.NoClientAPI {
		errs = append(errs, err)
	}
	if c.Transport == nil {
		if err := ValidateAddr("raft address", c.RaftAddr, true); err != nil {
			errs = append(errs, err)
		}
	}
	for what, a := range map[string]string{"advertise address": c.AdvertiseAddr, "raft advertise address": c.RaftAdvertiseAddr, "join address": c.Join} {
		if a != "" {
			if err := ValidateAddr(what, a, false); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for id, a := range c.RaftPeerAddrs {
		if err := ValidateNodeID(id); err != nil {
			errs = append(errs, err)
		}
		if err := ValidateAddr("raft peer address", a, false); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Bootstrap && c.Join != "" {
		errs = append(errs, fmt.Errorf("bootstrap and join %q both given; accepted: one of them, or neither on a restart", c.Join))
	}
	switch c.LogStore {
	case "wal", "bolt", "memory":
	default:
		errs = append(errs, fmt.Errorf("invalid log store %q; accepted: wal, bolt or memory", c.LogStore))
	}
	if c.HeartbeatTimeout < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("heartbeat timeout %v is below 10ms", c.HeartbeatTimeout))
	}
	if c.LeaderLeaseTimeout > c.HeartbeatTimeout || c.LeaderLeaseTimeout < 5*time.Millisecond {
		errs = append(errs, fmt.Errorf("leader lease timeout %v must be from 5ms up to the heartbeat timeout %v", c.LeaderLeaseTimeout, c.HeartbeatTimeout))
	}
	if c.MaxAppendEntries < 1 || c.MaxAppendEntries > 4096 {
		errs = append(errs, fmt.Errorf("max append entries %d; accepted: 1 to 4096", c.MaxAppendEntries))
	}
	return errors.Join(errs...)
}
