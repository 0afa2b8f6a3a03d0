// Package bench measures distributed locks: throughput, acquire latency,
// hand-off latency, fairness, renewals and errors, under the same workloads
// for any lock service. `fencer bench` drives fencer's own backends with it,
// and the side-by-side comparison (the benchcompare module) drives fencer
// and its peers (Redis libraries, etcd, ZooKeeper) with the very same code,
// so every row of the comparison is measured the same way.
//
// # Shape
//
// A [Locker] is one benchmark client's handle on a lock service: Acquire
// blocks until a named lock is granted, and the returned [Held] releases
// it. [Run] starts one goroutine per Locker, drives the chosen [Workload]
// for a warm-up and then a measured window, and returns a [Report].
// [FencerLocker] adapts a fencer.Client; [OpenFencer] opens a set of them
// from a backend URL, each its own Client over its own Backend (its own
// connections) unless asked to share one.
//
// # Workloads
//
//   - uncontended: every client has a lock of its own and acquires and
//     releases it in a loop. This is the cost of one grant and one release
//     with no waiting: throughput and acquire latency.
//   - contended: every client acquires the same lock, blocking. This is
//     the cost of handing a lock from one holder to the next: hand-off
//     latency, grants per second and fairness.
//   - mixed: K locks shared by all clients; each iteration picks one at
//     random (light to moderate contention, as in a real service).
//
// Every workload uses the blocking acquire: it is what lock users call,
// the one operation every peer offers (a ZooKeeper lock recipe and etcd's
// Mutex have no other), and on a free lock a well-built blocking acquire
// costs what a try costs, one round trip.
//
// # What is measured, exactly
//
// Times come from the monotonic clock of this process. An operation counts
// when it completes inside the measured window (after the warm-up).
//
//   - Acquire latency: from the call to Acquire to its return with a grant.
//     Under contention this includes the time spent queued.
//   - Pairs: acquire+release pairs whose release returned without error.
//   - Hand-off latency: from the moment the previous holder called Release
//     ("release sent", taken just before the release request leaves this
//     process) to the moment the next holder's Acquire returned, counted
//     only for a grantee that was already waiting when that release began.
//     Measuring from the release's start rather than its return includes
//     the release's own trip to the store, which is part of handing the
//     lock over, and cannot go negative when the store pushes the grant to
//     the waiter before the releaser has read its reply.
//   - Retakes: grants that went back to the client that had just released
//     the lock while others were waiting; a FIFO queue has none, a polling
//     lock has many.
//   - Fairness: grants per client in the window, their most and fewest.
//   - Overlaps: grants that found the lock already held by another client
//     of this process. A correct lock with leases longer than the run has
//     none; any overlap is a mutual exclusion failure seen by the benchmark.
//   - Renewals: counted by Lockers that implement [RenewalCounter] (the
//     fencer ones count their backend's successful Renew calls).
//   - Errors by kind: "acquire:timeout", "release:lease_lost", ... with one
//     sample message per kind. Acquires cut short by the end of the run are
//     not errors.
package bench
