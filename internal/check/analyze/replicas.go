package analyze

import (
	"fmt"
	"sort"
	"strings"

	"github.com/fencerlock/fencer/server"
)

// ReplicaReport is the result of the replica-agreement check.
type ReplicaReport struct {
	// Nodes counts the replica states given.
	Nodes int `json:"nodes"`
	// Agree is nil when there are no replicas, else whether every node
	// has the same applied index and state hash.
	Agree *bool `json:"agree"`
	// AppliedIndex and Hash are the state most nodes agree on.
	AppliedIndex uint64 `json:"applied_index,omitempty"`
	Hash         string `json:"hash,omitempty"`
	// Differ lists the nodes whose state is not the majority's.
	Differ []string `json:"differ,omitempty"`
	// Findings has a FindingReplicaDiffers per differing node.
	Findings []Finding `json:"findings,omitempty"`
}

// checkReplicas compares the replicas' applied index and state hash. The
// state held by the most nodes (ties: the one of the first node by id) is
// the reference; every other node is reported.
func checkReplicas(states []server.NodeState) ReplicaReport {
	rep := ReplicaReport{Nodes: len(states)}
	if len(states) == 0 {
		return rep
	}
	ns := append([]server.NodeState(nil), states...)
	sort.SliceStable(ns, func(i, j int) bool { return ns[i].NodeID < ns[j].NodeID })
	type state struct {
		applied uint64
		hash    string
	}
	count := map[state][]string{}
	var order []state
	for _, n := range ns {
		s := state{n.AppliedIndex, n.Hash}
		if _, ok := count[s]; !ok {
			order = append(order, s)
		}
		count[s] = append(count[s], n.NodeID)
	}
	ref := order[0]
	for _, s := range order[1:] {
		if len(count[s]) > len(count[ref]) {
			ref = s
		}
	}
	rep.AppliedIndex, rep.Hash = ref.applied, ref.hash
	agree := len(order) == 1
	rep.Agree = &agree
	for _, n := range ns {
		if n.AppliedIndex == ref.applied && n.Hash == ref.hash {
			continue
		}
		rep.Differ = append(rep.Differ, n.NodeID)
		var what []string
		if n.AppliedIndex != ref.applied {
			what = append(what, fmt.Sprintf("applied index %d, not %d", n.AppliedIndex, ref.applied))
		}
		if n.Hash != ref.hash {
			what = append(what, fmt.Sprintf("state hash %s, not %s", n.Hash, ref.hash))
		}
		rep.Findings = append(rep.Findings, Finding{Kind: FindingReplicaDiffers, Lock: n.NodeID,
			Summary: fmt.Sprintf("replica %s has %s (the state of %s); its last token is %d",
				n.NodeID, strings.Join(what, " and "), strings.Join(count[ref], ", "), n.LastToken)})
	}
	return rep
}
