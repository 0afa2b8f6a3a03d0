package server

import (
	"context"
	"sync"

	"github.com/hashicorp/raft"
)

// verifier confirms leadership with a quorum for many callers at once. A
// caller is answered by a verification that started after it asked, so a
// keep-alive or read is covered by a quorum contact that happened after it
// arrived. Concurrent callers share one round of heartbeats.
type verifier struct {
	r    *raft.Raft
	down <-chan struct{} // closed once Raft has shut down

	mu      sync.Mutex
	waiting []chan error
	running bool
}

func (v *verifier) verify(ctx context.Context) error {
	ch := make(chan error, 1)
	v.mu.Lock()
	v.waiting = append(v.waiting, ch)
	if !v.running {
		v.running = true
		go v.loop()
	}
	v.mu.Unlock()
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// loop runs rounds until nobody waits. Each round answers the callers that
// were waiting when it started.
func (v *verifier) loop() {
	for {
		v.mu.Lock()
		batch := v.waiting
		v.waiting = nil
		if len(batch) == 0 {
			v.running = false
			v.mu.Unlock()
			return
		}
		v.mu.Unlock()
		err := await(v.r.VerifyLeader(), v.down)
		for _, ch := range batch {
			ch <- err
		}
	}
}
