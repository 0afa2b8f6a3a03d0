package server

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/fencerlock/fencer/internal/lockstate"
)

// fsm adapts lockstate.Machine to raft.BatchingFSM. Raft calls ApplyBatch,
// Snapshot and Restore from its FSM goroutine, one at a time; the server's
// reads take mu for reading, so they see whole entries only.
type fsm struct {
	mu      sync.RWMutex
	m       *lockstate.Machine
	applied uint64        // index of the last applied entry; guarded by mu
	notify  chan struct{} // closed and replaced after every batch; guarded by mu

	// onEvents receives the events of each batch, in log order, after mu is
	// released. It runs on the FSM goroutine and must not block.
	onEvents func([]lockstate.Event)
}

var _ raft.BatchingFSM = (*fsm)(nil)

func newFSM(onEvents func([]lockstate.Event)) *fsm {
	return &fsm{m: lockstate.New(), notify: make(chan struct{}), onEvents: onEvents}
}

// Apply applies one entry. Raft calls ApplyBatch instead when the FSM has
// it; Apply is here to satisfy raft.FSM.
func (f *fsm) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

// ApplyBatch applies committed entries in log order and returns one
// lockstate.Result (or nil, for entries that are not commands) per entry.
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	var events []lockstate.Event
	f.mu.Lock()
	for i, l := range logs {
		if l.Type == raft.LogCommand {
			out[i], events = f.apply(l.Data, events)
		}
		f.applied = l.Index
	}
	close(f.notify)
	f.notify = make(chan struct{})
	f.mu.Unlock()
	if len(events) > 0 && f.onEvents != nil {
		f.onEvents(events)
	}
	return out
}

// apply applies one entry: a single command, whose result is a
// lockstate.Result, or a batch, whose result is a []lockstate.Result with
// one result per command. It appends the events to events.
func (f *fsm) apply(entry []byte, events []lockstate.Event) (any, []lockstate.Event) {
	cmds, err := splitBatch(entry)
	if err != nil {
		// Only a bug in this server could log a malformed batch; apply
		// nothing from it, on every replica alike.
		return err, events
	}
	if len(entry) == 0 || entry[0] != batchEntry {
		res := f.m.Apply(entry)
		return res, append(events, res.Events...)
	}
	results := make([]lockstate.Result, len(cmds))
	for i, c := range cmds {
		results[i] = f.m.Apply(c)
		events = append(events, results[i].Events...)
	}
	return results, events
}

// Snapshot copies the state while Apply is held off; Persist writes the
// copy while Apply goes on.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	// The applied index goes first, so a node restored from the snapshot
	// knows how far its state reaches before it applies anything else.
	b := binary.AppendUvarint(nil, f.applied)
	return snapshot(append(b, f.m.Snapshot()...)), nil
}

// Restore replaces the state with a snapshot's.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	r := bufio.NewReader(rc)
	applied, err := binary.ReadUvarint(r)
	if err != nil {
		return fmt.Errorf("snapshot: applied index: %w", err)
	}
	m := lockstate.New()
	if err := m.Restore(r); err != nil {
		return err
	}
	f.mu.Lock()
	f.m = m
	f.applied = applied
	close(f.notify)
	f.notify = make(chan struct{})
	f.mu.Unlock()
	return nil
}

// read runs fn with the machine held for reading.
func (f *fsm) read(fn func(m *lockstate.Machine, applied uint64)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fn(f.m, f.applied)
}

// waitApplied waits until the entry at index has been applied.
func (f *fsm) waitApplied(ctx context.Context, index uint64) error {
	for {
		f.mu.RLock()
		applied, notify := f.applied, f.notify
		f.mu.RUnlock()
		if applied >= index {
			return nil
		}
		select {
		case <-notify:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

type snapshot []byte

func (s snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s snapshot) Release() {}
