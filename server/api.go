package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"connectrpc.com/connect"

	"github.com/fencerlock/fencer/internal/api/fencerv1"
	"github.com/fencerlock/fencer/internal/api/fencerv1/fencerv1connect"
	"github.com/fencerlock/fencer/internal/lockstate"
	"github.com/fencerlock/fencer/internal/wire"
)

// LeaderHeader is the response header (and trailer) in which a node that is
// not the leader names the leader's client API address.
const LeaderHeader = "Fencer-Leader"

// maxRequestBytes bounds every request message.
const maxRequestBytes = 1 << 20

// api adapts the service to the generated Connect handler: it converts
// messages and maps errors to status codes. Connect serves gRPC, gRPC-Web
// and the Connect protocol (JSON or protobuf over HTTP POST) on one handler.
type api struct{ s *Server }

var _ fencerv1connect.LockServiceHandler = api{}

func (s *Server) handler() http.Handler {
	mux := http.NewServeMux()
	path, h := fencerv1connect.NewLockServiceHandler(api{s}, connect.WithReadMaxBytes(maxRequestBytes),
		// Lock messages are tens of bytes: compressing them costs more CPU
		// than it saves, so only large responses (a full Status) are.
		connect.WithCompressMinBytes(4096))
	mux.Handle(path, h)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	// This node's own view, not linearizable: for comparing replicas.
	mux.HandleFunc("GET /debug/state", func(w http.ResponseWriter, r *http.Request) {
		hash, applied := s.StateHash()
		var lastToken uint64
		s.fsm.read(func(m *lockstate.Machine, _ uint64) { lastToken = m.LastToken() })
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(NodeState{
			NodeID: s.cfg.NodeID, Leader: s.IsLeader(), AppliedIndex: applied,
			CommitIndex: s.raft.CommitIndex(), Hash: fmt.Sprintf("%016x", hash), LastToken: lastToken,
		})
	})
	return mux
}

// connectCodes maps the service's status codes to Connect's.
var connectCodes = [...]connect.Code{
	wire.CodeInvalidArgument:    connect.CodeInvalidArgument,
	wire.CodeFailedPrecondition: connect.CodeFailedPrecondition,
	wire.CodeUnavailable:        connect.CodeUnavailable,
	wire.CodeAborted:            connect.CodeAborted,
	wire.CodeNotFound:           connect.CodeNotFound,
	wire.CodeInternal:           connect.CodeInternal,
	wire.CodeCanceled:           connect.CodeCanceled,
	wire.CodeDeadlineExceeded:   connect.CodeDeadlineExceeded,
}

// toConnect maps a service error to a Connect error with the right code;
// a follower's answer names the leader in LeaderHeader.
func toConnect(err error) error {
	if err == nil {
		return nil
	}
	st := statusOf(err)
	ce := connect.NewError(connectCodes[st.code], err)
	if st.leader != "" {
		ce.Meta().Set(LeaderHeader, st.leader)
	}
	return ce
}

func (a api) Acquire(ctx context.Context, req *connect.Request[fencerv1.AcquireRequest]) (*connect.Response[fencerv1.AcquireResponse], error) {
	m := req.Msg
	args, err := validateAcquire(m.SessionId, m.Name, m.TtlMs, m.LockDelayMs, m.Wait)
	if err != nil {
		return nil, toConnect(err)
	}
	res, err := a.s.acquire(ctx, args)
	if err != nil {
		return nil, toConnect(err)
	}
	out := &fencerv1.AcquireResponse{Status: fencerv1.AcquireStatus_ACQUIRE_STATUS_LOCKED, RaftIndex: res.index}
	if res.granted {
		out.Status, out.Token = fencerv1.AcquireStatus_ACQUIRE_STATUS_GRANTED, res.token
	}
	return connect.NewResponse(out), nil
}

func (a api) Release(ctx context.Context, req *connect.Request[fencerv1.ReleaseRequest]) (*connect.Response[fencerv1.ReleaseResponse], error) {
	ok, err := a.s.release(ctx, req.Msg.SessionId, req.Msg.Token)
	if err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&fencerv1.ReleaseResponse{Released: ok}), nil
}

func (a api) KeepAlive(ctx context.Context, req *connect.Request[fencerv1.KeepAliveRequest]) (*connect.Response[fencerv1.KeepAliveResponse], error) {
	expired, err := a.s.keepAlive(ctx, req.Msg.SessionIds)
	if err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&fencerv1.KeepAliveResponse{Expired: expired}), nil
}

func (a api) Status(ctx context.Context, req *connect.Request[fencerv1.StatusRequest]) (*connect.Response[fencerv1.StatusResponse], error) {
	st, err := a.s.status(ctx, req.Msg.Name)
	if err != nil {
		return nil, toConnect(err)
	}
	out := &fencerv1.StatusResponse{LastToken: st.lastToken, Sessions: uint64(st.sessions), RaftIndex: st.index}
	for _, l := range st.locks {
		ls := &fencerv1.LockState{Name: l.Name, HolderSession: l.Holder, Token: l.Token, Delayed: l.DelayGeneration != 0}
		if !l.Since.IsZero() {
			ls.SinceUnixMs = l.Since.UnixMilli()
		}
		for _, w := range l.Waiters {
			ls.Waiters = append(ls.Waiters, w.Session)
		}
		out.Locks = append(out.Locks, ls)
	}
	return connect.NewResponse(out), nil
}

func (a api) Members(ctx context.Context, req *connect.Request[fencerv1.MembersRequest]) (*connect.Response[fencerv1.MembersResponse], error) {
	ms, leader, err := a.s.members(ctx)
	if err != nil {
		return nil, toConnect(err)
	}
	out := &fencerv1.MembersResponse{LeaderId: leader}
	for _, m := range ms {
		out.Members = append(out.Members, &fencerv1.Member{Id: m.ID, RaftAddress: m.RaftAddress, ClientAddress: m.ClientAddress, Role: m.Role})
	}
	return connect.NewResponse(out), nil
}

func (a api) Join(ctx context.Context, req *connect.Request[fencerv1.JoinRequest]) (*connect.Response[fencerv1.JoinResponse], error) {
	idx, err := a.s.join(ctx, req.Msg.Id, req.Msg.RaftAddress, req.Msg.ClientAddress)
	if err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&fencerv1.JoinResponse{RaftIndex: idx}), nil
}

func (a api) Remove(ctx context.Context, req *connect.Request[fencerv1.RemoveRequest]) (*connect.Response[fencerv1.RemoveResponse], error) {
	idx, err := a.s.remove(ctx, req.Msg.Id)
	if err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&fencerv1.RemoveResponse{RaftIndex: idx}), nil
}

// NodeState is one node's own view of the replicated state, served at
// GET /debug/state for comparing replicas. It is not linearizable.
type NodeState struct {
	NodeID       string `json:"node_id"`
	Leader       bool   `json:"leader"`
	AppliedIndex uint64 `json:"applied_index"`
	CommitIndex  uint64 `json:"commit_index"`
	Hash         string `json:"hash"` // digest of the state machine
	LastToken    uint64 `json:"last_token"`
}
