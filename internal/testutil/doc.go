// Package testutil starts and controls real server processes for tests:
// free loopback ports, processes that are stopped when the test ends (or
// when the test binary dies), pause and resume with SIGSTOP/SIGCONT, kill -9.
//
// Subpackages start particular servers: redistest (redis-server), pgtest
// (PostgreSQL). Everything listens on 127.0.0.1 only, never on a server's
// default port, in directories from t.TempDir.
package testutil
