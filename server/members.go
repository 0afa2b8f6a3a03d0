package server

import (
	"context"
	"fmt"
	"sort"

	"github.com/hashicorp/raft"

	"github.com/fencerlock/fencer/internal/lockstate"
)

// Member is one node of the cluster as Members reports it.
type Member struct {
	ID            string
	RaftAddress   string
	ClientAddress string // empty until the node has registered it
	Role          string // "leader", "follower" or "nonvoter"
}

// members lists the Raft configuration with each node's role. It is served
// by the leader, whose view of the configuration is authoritative.
func (s *Server) members(ctx context.Context) ([]Member, string, error) {
	if err := s.checkLeader(); err != nil {
		return nil, "", err
	}
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, "", s.raftErr(err)
	}
	_, leader := s.raft.LeaderWithID()
	var out []Member
	s.fsm.read(func(m *lockstate.Machine, _ uint64) {
		for _, srv := range f.Configuration().Servers {
			addr, _ := m.Member(string(srv.ID))
			role := "follower"
			switch {
			case srv.Suffrage != raft.Voter:
				role = "nonvoter"
			case srv.ID == leader:
				role = "leader"
			}
			out = append(out, Member{ID: string(srv.ID), RaftAddress: string(srv.Address), ClientAddress: addr, Role: role})
		}
	})
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, string(leader), nil
}

// join adds a voter, or updates the addresses of a known one.
func (s *Server) join(ctx context.Context, id, raftAddr, clientAddr string) (uint64, error) {
	if err := ValidateNodeID(id); err != nil {
		return 0, err
	}
	if err := ValidateAddr("raft_address", raftAddr, false); err != nil {
		return 0, err
	}
	if err := ValidateAddr("client_address", clientAddr, false); err != nil {
		return 0, err
	}
	if err := s.checkLeader(); err != nil {
		return 0, err
	}
	cf := s.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return 0, s.raftErr(err)
	}
	var index uint64
	known := false
	for _, srv := range cf.Configuration().Servers {
		if srv.ID == raft.ServerID(id) && srv.Address == raft.ServerAddress(raftAddr) && srv.Suffrage == raft.Voter {
			known = true
		}
	}
	if !known {
		f := s.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(raftAddr), 0, applyTimeout)
		if err := f.Error(); err != nil {
			return 0, fmt.Errorf("add voter %s at %s: %w", id, raftAddr, s.raftErr(err))
		}
		index = f.Index()
		s.log.Info("node joined", "node", id, "raft", raftAddr, "client", clientAddr)
	}
	pr := s.prop.propose(lockstate.SetMember{ID: id, Addr: clientAddr})
	if _, err := pr.wait(); err != nil {
		return 0, s.raftErr(err)
	}
	return max(index, pr.index), nil
}

// remove takes a node out of the cluster.
func (s *Server) remove(ctx context.Context, id string) (uint64, error) {
	if err := ValidateNodeID(id); err != nil {
		return 0, err
	}
	if err := s.checkLeader(); err != nil {
		return 0, err
	}
	cf := s.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return 0, s.raftErr(err)
	}
	found := false
	for _, srv := range cf.Configuration().Servers {
		found = found || srv.ID == raft.ServerID(id)
	}
	if !found {
		return 0, invalid("node id", id, "the ID of a current member; see `fencer members`")
	}
	// Forget the client address first: the leader may be removing itself.
	if _, err := s.apply(lockstate.SetMember{ID: id}); err != nil {
		return 0, err
	}
	f := s.raft.RemoveServer(raft.ServerID(id), 0, applyTimeout)
	if err := f.Error(); err != nil {
		return 0, fmt.Errorf("remove %s: %w", id, s.raftErr(err))
	}
	s.log.Info("node removed", "node", id)
	return f.Index(), nil
}
