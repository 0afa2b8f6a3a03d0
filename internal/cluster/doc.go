// Package cluster runs a fencer server cluster as real `fencer server`
// processes on loopback, and injects the faults of the lock server's
// scenarios into it: kill -9, SIGTERM, SIGSTOP/SIGCONT, restarts from the
// data directories, network partitions between the nodes' Raft links, and
// membership changes. The server tests and the checker (`fencer check`) both
// use it, so nothing in its API takes a testing.TB. (It starts processes
// with internal/testutil.StartProc, so package testing is still linked in.)
//
//	c, err := cluster.Start(ctx, cluster.Config{Binary: bin, Dir: dir, Nodes: 3, Proxies: true})
//	if err != nil { ... }
//	defer c.Close()
//	leader, err := c.Leader(ctx)
//	c.Partition().Isolate(leader) // the majority elects a new leader
//	c.Partition().Heal()
//	err = c.WaitConverged(ctx)    // every live replica has the same state
//
// # Nodes
//
// Nodes are named n1, n2, ...; n1 bootstraps the cluster and the others join
// it. Each listens on free loopback ports for its client API and for Raft,
// keeps its data in Dir/<id>, and logs to Dir/<id>.log (a restart appends).
// A node keeps its ports and data directory for the cluster's life, so
// Restart runs the node again with its original command line, as an operator
// would; a node with a data directory rejoins from it and ignores --join.
//
// # Partitions
//
// With Config.Proxies, every Raft link from a node to a peer goes through a
// fault-injecting proxy of its own (package netproxy): each node is started
// with --raft-peer ID=ADDR for every peer, naming the proxy of that link.
// [Cluster.Partition] returns the proxies as a [netproxy.Partition], whose
// Split, Isolate and Heal cut and heal links. Client traffic, and the
// harness's own calls, go directly to the nodes. The set of links is fixed
// when the cluster starts, so nodes to be added later must be reserved with
// Config.Spares; they are in the Partition from the start.
//
// # Concurrency and cleanup
//
// A Cluster is safe for concurrent use; each node's changes of state are
// serialised, and a node counts as running until its process has exited.
// Close kills every process and closes the proxies; the processes also die
// with the process that started them (the parent-death signal), so a
// crashed test or checker leaves nothing behind.
package cluster
