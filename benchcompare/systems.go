package main

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/fencerlock/fencer/backends"
)

// system is one row of the comparison: a lock implementation over the
// servers it needs.
type system struct {
	id       string // stable key, used by --only and in targets
	name     string // the row's label
	store    string // what stands behind it, briefly
	services []string
	// open returns the function that opens n Lockers for a cell; it is
	// called once the services are up.
	open func(e *env, o options) func(ctx context.Context, n int) (*lockerSet, error)
	// skip, if not empty, says why the row cannot run.
	skip string
}

// options are the settings every system shares.
type options struct {
	ttl  time.Duration // every lock's lease / expiry / session TTL
	poll time.Duration // the retry interval of the polling locks (raw SET NX, bsm/redislock, the SQL table)
}

func systems() []system {
	pgSkip := ""
	if !slices.Contains(backends.Schemes(), "postgres") {
		pgSkip = "not run: backends.Open has no postgres:// backend in this build yet"
	}
	return []system{
		{id: "fencer3", name: "fencer server ×3", store: "Raft ×3, fsync", services: []string{svcFencer3},
			open: func(e *env, o options) func(context.Context, int) (*lockerSet, error) {
				return openFencer(e.fencer3, o.ttl)
			}},
		{id: "fencer1", name: "fencer server ×1", store: "Raft ×1, fsync", services: []string{svcFencer1},
			open: func(e *env, o options) func(context.Context, int) (*lockerSet, error) {
				return openFencer(e.fencer1, o.ttl)
			}},
		{id: "fencer-pg", name: "fencer postgres", store: "PostgreSQL, fsync", services: []string{svcPostgres}, skip: pgSkip,
			open: func(e *env, o options) func(context.Context, int) (*lockerSet, error) {
				return openFencer(e.pgURL, o.ttl)
			}},
		{id: "fencer-redis", name: "fencer redis", store: "Redis, no persistence", services: []string{svcRedis},
			open: func(e *env, o options) func(context.Context, int) (*lockerSet, error) {
				return openFencer("redis://"+e.redis, o.ttl)
			}},
		{id: "fencer-redis-aof", name: "fencer redis, AOF always", store: "Redis, appendfsync always", services: []string{svcRedisAOF},
			open: func(e *env, o options) func(context.Context, int) (*lockerSet, error) {
				return openFencer("redis://"+e.redisAOF, o.ttl)
			}},
		{id: "fencer-redlock3", name: "fencer redlock ×3", store: "3 Redis masters", services: []string{svcRedis5},
			open: func(e *env, o options) func(context.Context, int) (*lockerSet, error) {
				return openFencer("redlock://"+strings.Join(e.redis5[:3], ","), o.ttl)
			}},
		{id: "fencer-redlock5", name: "fencer redlock ×5", store: "5 Redis masters", services: []string{svcRedis5},
			open: func(e *env, o options) func(context.Context, int) (*lockerSet, error) {
				return openFencer("redlock://"+strings.Join(e.redis5, ","), o.ttl)
			}},
		{id: "raw-redis", name: "raw SET NX + Lua (floor)", store: "Redis, no persistence", services: []string{svcRedis},
			open: func(e *env, o options) func(context.Context, int) (*lockerSet, error) {
				return openRawRedis(e.redis, o.ttl, o.poll)
			}},
		{id: "raw-redis-aof", name: "raw SET NX + Lua, AOF always", store: "Redis, appendfsync always", services: []string{svcRedisAOF},
			open: func(e *env, o options) func(context.Context, int) (*lockerSet, error) {
				return openRawRedis(e.redisAOF, o.ttl, o.poll)
			}},
		{id: "raw-pg", name: "raw SQL lock table (floor)", store: "PostgreSQL, fsync", services: []string{svcPostgres},
			open: func(e *env, o options) func(context.Context, int) (*lockerSet, error) {
				return openPGTable(e.pgURL, o.ttl, o.poll)
			}},
		{id: "redsync1", name: "redsync ×1", store: "Redis, no persistence", services: []string{svcRedis},
			open: func(e *env, o options) func(context.Context, int) (*lockerSet, error) {
				return openRedsync([]string{e.redis}, o.ttl)
			}},
		{id: "redsync3", name: "redsync Redlock ×3", store: "3 Redis masters", services: []string{svcRedis5},
			open: func(e *env, o options) func(context.Context, int) (*lockerSet, error) {
				return openRedsync(e.redis5[:3], o.ttl)
			}},
		{id: "redsync5", name: "redsync Redlock ×5", store: "5 Redis masters", services: []string{svcRedis5},
			open: func(e *env, o options) func(context.Context, int) (*lockerSet, error) {
				return openRedsync(e.redis5, o.ttl)
			}},
		{id: "bsm", name: "bsm/redislock", store: "Redis, no persistence", services: []string{svcRedis},
			open: func(e *env, o options) func(context.Context, int) (*lockerSet, error) {
				return openBSM(e.redis, o.ttl, o.poll)
			}},
		{id: "etcd1", name: "etcd Mutex ×1", store: "Raft ×1, fsync", services: []string{svcEtcd1},
			open: func(e *env, o options) func(context.Context, int) (*lockerSet, error) {
				return openEtcd(e.etcd1, o.ttl)
			}},
		{id: "etcd3", name: "etcd Mutex ×3", store: "Raft ×3, fsync", services: []string{svcEtcd3},
			open: func(e *env, o options) func(context.Context, int) (*lockerSet, error) {
				return openEtcd(e.etcd3, o.ttl)
			}},
		{id: "zk1", name: "ZooKeeper lock ×1", store: "ZAB ×1, fsync", services: []string{svcZK},
			open: func(e *env, o options) func(context.Context, int) (*lockerSet, error) { return openZK(e.zk, o.ttl) }},
	}
}
