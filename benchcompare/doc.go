// Command benchcompare measures fencer side by side with the locks users
// would otherwise pick, in one run on one machine, and writes the table to
// docs/benchmarks.md. Run it through scripts/bench-compare, which installs
// the servers and builds the binaries:
//
//	scripts/bench-compare [--runs 3] [--duration 8s] [--only 'fencer|etcd']
//
// It starts everything itself on loopback ports in a temporary directory,
// and stops it all at the end, on an error, or on Ctrl-C: redis-server
// (plain, and with appendfsync always), five Redis masters for Redlock, a
// one-node and a three-node fencer cluster (`fencer server` processes,
// fsync on), PostgreSQL (as the postgres user when run as root), a one-node
// and a three-member etcd, and one ZooKeeper.
//
// Every row is driven by the same workload driver, package
// github.com/fencerlock/fencer/bench, through its small Locker interface:
// fencer's backends through fencer.Client, the peers (raw go-redis, redsync,
// bsm/redislock, etcd's concurrency.Mutex, go-zookeeper's lock recipe, a
// raw SQL lock table) through adapters in this module. Peer libraries live
// in this module only, so they never enter fencer's own go.mod.
//
// Each system runs three cells: uncontended (64 clients, each on its own
// lock), contended (16 clients on one lock) and single (one client, for
// latency without queueing). Before them it measures the machine's floor:
// an fdatasync of an appended block and a loopback round trip between two
// processes.
package main
