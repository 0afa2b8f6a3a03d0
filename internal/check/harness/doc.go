// Package harness runs one checker run: one scenario against one backend.
// It starts the processes the run needs on loopback (the lock service as
// the Setup describes it, `fencer store`, and client workers running
// package traffic as `fencer check-worker`), puts a fault-injecting proxy
// (package netproxy) on every client link, injects the faults a scenario
// asks for, records them in the run's history, and at the end collects
// what package analyze needs: the merged history, the store's accept log
// and final state, and the lock servers' own states.
//
// In the terms of etcd's robustness tests, the workers are the traffic,
// this package is the failpoints and the environment, package analyze is
// the model and the validation, package report the report; package
// scenario says what each run does.
//
// # Names
//
// Every process and link has a name, used in the fault methods and in the
// history's fault events:
//
//	c1, c2, ...          client workers (WorkerSpec.Name)
//	n1, n2, ...          fencer server nodes (package cluster's IDs)
//	r1 ... r5            Redlock's Redis masters
//	redis                the single Redis instance; with Setup.Replica,
//	primary, replica     the primary and its replica (clients reach the
//	                     primary through a switch that a failover moves)
//	postgres             the PostgreSQL server
//	store                the fenced store
//
// A link is named from→to, e.g. "c1→store" or "c2→r4": the proxy that
// worker's connections to that server go through ([Env.SetLink]).
//
// One limit: a fencer client follows a follower's redirect to the leader's
// own address, which bypasses the worker's proxies (the client has no dial
// hook). So faults on a worker's links to fencer nodes hold only while it
// talks to the node it reached first; the harness lists the leader's proxy
// first, so that is the leader until leadership moves.
//
// # History
//
// The harness records its own events in the run's history as process
// "nemesis": fault-start and fault-end (attributes fault and target), and
// pause/resume with Process set to the paused process. Workers record
// theirs (package traffic). [Env.Collect] merges every file.
//
// # Concurrency and cleanup
//
// An Env is safe for concurrent use (a scenario may inject faults from
// several goroutines). Close kills every process and proxy it started and
// waits for them; it must be called, also after errors. Processes also die
// with the process that started them (testutil's parent-death signal).
package harness
