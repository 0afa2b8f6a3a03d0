package lockstate_test

import (
	"bytes"
	"fmt"
	"time"

	"github.com/fencerlock/fencer/internal/lockstate"
)

// The leader encodes each request as a log entry; every replica applies the
// committed entries in order. Here one Machine stands for the whole cluster.
func Example() {
	m := lockstate.New()
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	apply := func(cmd lockstate.Command) lockstate.Result {
		res := m.Apply(lockstate.Encode(cmd)) // the bytes Raft replicates
		fmt.Println(res)
		for _, e := range res.Events {
			fmt.Println("  event:", e) // the leader wakes the waiting caller
		}
		return res
	}

	alice := apply(lockstate.OpenSession{TTL: 10 * time.Second, Now: now}).Session
	bob := apply(lockstate.OpenSession{TTL: 10 * time.Second, Now: now}).Session
	grant := apply(lockstate.Acquire{Session: alice, Seq: 1, Name: "jobs/report", LockDelay: 5 * time.Second, Now: now})
	apply(lockstate.Acquire{Session: bob, Seq: 1, Name: "jobs/report", Wait: true, Now: now})

	// Alice's client vanishes; when her deadline passes on the leader's
	// clock, the leader proposes the expiry. Her lock-delay holds the lock
	// back; the leader proposes LiftDelay when it has passed.
	apply(lockstate.ExpireSession{Session: alice, Now: now.Add(10 * time.Second)})
	for _, d := range m.PendingDelays() {
		apply(lockstate.LiftDelay{Name: d.Name, Generation: d.Generation, Now: now.Add(15 * time.Second)})
	}
	// Alice's late release finds her session gone and changes nothing.
	apply(lockstate.Release{Session: alice, Seq: 2, Name: "jobs/report", Token: grant.Token})

	// A follower installing a snapshot reaches the same state.
	follower := lockstate.New()
	if err := follower.Restore(bytes.NewReader(m.Snapshot())); err != nil {
		panic(err)
	}
	fmt.Println(follower.Hash() == m.Hash(), follower.LastToken())
	// Output:
	// ok session=1
	// ok session=2
	// granted token=1
	//   event: granted s=1 seq=1 name="jobs/report" token=1
	// queued
	// ok
	//   event: delayed name="jobs/report" gen=1 delay=5s
	// ok
	//   event: granted s=2 seq=1 name="jobs/report" token=2
	// failed UnknownSession: session 1 is not open (never opened, closed or expired); open a new session
	// true 2
}
