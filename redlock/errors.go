package redlock

import (
	"strconv"
	"strings"
)

// QuorumError reports an acquire, renewal or release that fewer than a
// majority of the nodes confirmed, for reasons other than the lock being
// held by another owner (that is fencer.ErrLocked) or no longer ours (that
// is fencer.ErrLeaseLost): nodes failed, timed out, or the vote split. Its
// message counts the nodes ("2 of 5 nodes granted; 3 needed") and lists
// every node that did not confirm, with why.
type QuorumError struct {
	Op        string  // "acquire", "renew" or "release"
	Lock      string  // the lock name
	Confirmed int     // nodes that confirmed the operation
	Needed    int     // the majority, len(nodes)/2+1
	Nodes     int     // how many nodes there are
	Errs      []error // one *NodeError per node that did not confirm, in node order
}

func (e *QuorumError) Error() string {
	var b strings.Builder
	b.WriteString("redlock: ")
	b.WriteString(e.Op)
	b.WriteString(" ")
	b.WriteString(strconv.Quote(e.Lock))
	b.WriteString(": ")
	b.WriteString(strconv.Itoa(e.Confirmed))
	b.WriteString(" of ")
	b.WriteString(strconv.Itoa(e.Nodes))
	b.WriteString(" nodes ")
	b.WriteString(pastTense(e.Op))
	b.WriteString("; ")
	b.WriteString(strconv.Itoa(e.Needed))
	b.WriteString(" needed")
	for i, err := range e.Errs {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(err.Error())
	}
	return b.String()
}

// Unwrap returns the per-node errors, so errors.Is and errors.As look into
// them (a node's context.DeadlineExceeded, a *net.OpError).
func (e *QuorumError) Unwrap() []error { return e.Errs }

func pastTense(op string) string {
	switch op {
	case "acquire":
		return "granted"
	case "renew":
		return "renewed"
	case "release":
		return "released"
	}
	return "confirmed"
}

// NodeError is what one node answered, or failed to, in an operation.
type NodeError struct {
	Node string // the node's address, or "node N" for a client without one
	Err  error
}

func (e *NodeError) Error() string { return "node " + e.Node + ": " + e.Err.Error() }

// Unwrap returns the node's error.
func (e *NodeError) Unwrap() error { return e.Err }
