package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/bsm/redislock"
	"github.com/go-redsync/redsync/v4"
	redsyncredis "github.com/go-redsync/redsync/v4/redis"
	"github.com/go-redsync/redsync/v4/redis/goredis/v9"
	"github.com/go-zookeeper/zk"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/bench"
)

// Each peer adapter is one benchmark client: its own connections, used by
// one goroutine at a time (bench.Run's contract for unshared Lockers). Its
// close releases those connections.

// lockerSet is what opening a system for a cell gives: one Locker per
// client and how to close them all.
type lockerSet struct {
	lockers []bench.Locker
	close   func() error
}

// openEach opens n Lockers with open, closing those already open if one
// fails.
func openEach[L bench.Locker](ctx context.Context, n int, open func(ctx context.Context) (L, error), closeOne func(L) error) (*lockerSet, error) {
	var ls []L
	closeAll := func() error {
		var errs []error
		for _, l := range ls {
			errs = append(errs, closeOne(l))
		}
		return errors.Join(errs...)
	}
	for range n {
		l, err := open(ctx)
		if err != nil {
			return nil, errors.Join(err, closeAll())
		}
		ls = append(ls, l)
	}
	s := &lockerSet{close: closeAll}
	for _, l := range ls {
		s.lockers = append(s.lockers, l)
	}
	return s, nil
}

func randomValue() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// waitCtx waits for d or until ctx is done, and returns ctx's error then.
func waitCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func newRedisClient(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
}

// rawRedis is the floor: go-redis SET key value NX PX ttl to acquire, a
// Lua compare-and-delete to release, and, while the lock is held, a fixed
// poll interval. No token, no renewal, no wake-up: the least a Redis lock
// can do.
type rawRedis struct {
	c    *redis.Client
	ttl  time.Duration
	poll time.Duration
}

var releaseScript = redis.NewScript(`if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) else return 0 end`)

func (r *rawRedis) Acquire(ctx context.Context, name string) (bench.Held, error) {
	value := randomValue()
	for {
		ok, err := r.c.SetNX(ctx, name, value, r.ttl).Result()
		if err != nil {
			return nil, err
		}
		if ok {
			return heldFunc(func(ctx context.Context) error {
				n, err := releaseScript.Run(ctx, r.c, []string{name}, value).Int64()
				if err != nil {
					return err
				}
				if n != 1 {
					return fmt.Errorf("%w: %q expired or taken over", fencer.ErrLeaseLost, name)
				}
				return nil
			}), nil
		}
		if err := waitCtx(ctx, r.poll); err != nil {
			return nil, err
		}
	}
}

type heldFunc func(ctx context.Context) error

func (h heldFunc) Release(ctx context.Context) error { return h(ctx) }

func openRawRedis(addr string, ttl, poll time.Duration) func(ctx context.Context, n int) (*lockerSet, error) {
	return func(ctx context.Context, n int) (*lockerSet, error) {
		return openEach(ctx, n, func(context.Context) (*rawRedis, error) {
			return &rawRedis{c: newRedisClient(addr), ttl: ttl, poll: poll}, nil
		}, func(r *rawRedis) error { return r.c.Close() })
	}
}

// redsyncLocker is go-redsync/redsync v4 over one pool per node (one node:
// a plain Redis lock; 3 or 5: Redlock), with its default retry delay (a
// random 50-250 ms) and as many tries as it takes: the wait ends with ctx.
type redsyncLocker struct {
	clients []*redis.Client
	rs      *redsync.Redsync
	ttl     time.Duration
}

func (r *redsyncLocker) Acquire(ctx context.Context, name string) (bench.Held, error) {
	m := r.rs.NewMutex(name, redsync.WithExpiry(r.ttl), redsync.WithTries(math.MaxInt32))
	if err := m.LockContext(ctx); err != nil {
		if ctx.Err() != nil {
			return nil, errors.Join(err, ctx.Err())
		}
		return nil, err
	}
	return heldFunc(func(ctx context.Context) error {
		ok, err := m.UnlockContext(ctx)
		if err != nil {
			var taken *redsync.ErrTaken
			if errors.As(err, &taken) || errors.Is(err, redsync.ErrLockAlreadyExpired) {
				return fmt.Errorf("%w: %v", fencer.ErrLeaseLost, err)
			}
			return err
		}
		if !ok {
			return fmt.Errorf("%w: redsync could not unlock %q on a quorum", fencer.ErrLeaseLost, name)
		}
		return nil
	}), nil
}

func openRedsync(addrs []string, ttl time.Duration) func(ctx context.Context, n int) (*lockerSet, error) {
	return func(ctx context.Context, n int) (*lockerSet, error) {
		return openEach(ctx, n, func(context.Context) (*redsyncLocker, error) {
			l := &redsyncLocker{ttl: ttl}
			var pools []redsyncredis.Pool
			for _, a := range addrs {
				c := newRedisClient(a)
				l.clients = append(l.clients, c)
				pools = append(pools, goredis.NewPool(c))
			}
			l.rs = redsync.New(pools...)
			return l, nil
		}, func(l *redsyncLocker) error {
			var errs []error
			for _, c := range l.clients {
				errs = append(errs, c.Close())
			}
			return errors.Join(errs...)
		})
	}
}

// bsmLocker is bsm/redislock: Obtain with a linear retry at the poll
// interval until ctx ends (the library retries nothing by default).
type bsmLocker struct {
	c    *redis.Client
	rl   *redislock.Client
	ttl  time.Duration
	poll time.Duration
}

func (b *bsmLocker) Acquire(ctx context.Context, name string) (bench.Held, error) {
	l, err := b.rl.Obtain(ctx, name, b.ttl, &redislock.Options{RetryStrategy: redislock.LinearBackoff(b.poll)})
	if err != nil {
		return nil, err
	}
	return heldFunc(func(ctx context.Context) error {
		err := l.Release(ctx)
		if errors.Is(err, redislock.ErrLockNotHeld) {
			return fmt.Errorf("%w: %v", fencer.ErrLeaseLost, err)
		}
		return err
	}), nil
}

func openBSM(addr string, ttl, poll time.Duration) func(ctx context.Context, n int) (*lockerSet, error) {
	return func(ctx context.Context, n int) (*lockerSet, error) {
		return openEach(ctx, n, func(context.Context) (*bsmLocker, error) {
			c := newRedisClient(addr)
			return &bsmLocker{c: c, rl: redislock.New(c), ttl: ttl, poll: poll}, nil
		}, func(b *bsmLocker) error { return b.c.Close() })
	}
}

// etcdLocker is etcd's concurrency.Mutex over a Session (a lease kept
// alive by the client) of its own client connection: the way etcd's own
// docs use it.
type etcdLocker struct {
	c    *clientv3.Client
	sess *concurrency.Session
}

func (e *etcdLocker) Acquire(ctx context.Context, name string) (bench.Held, error) {
	m := concurrency.NewMutex(e.sess, "/"+name)
	if err := m.Lock(ctx); err != nil {
		return nil, err
	}
	return heldFunc(func(ctx context.Context) error { return m.Unlock(ctx) }), nil
}

func openEtcd(endpoints []string, ttl time.Duration) func(ctx context.Context, n int) (*lockerSet, error) {
	return func(ctx context.Context, n int) (*lockerSet, error) {
		return openEach(ctx, n, func(ctx context.Context) (*etcdLocker, error) {
			c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
			if err != nil {
				return nil, err
			}
			sess, err := concurrency.NewSession(c, concurrency.WithTTL(max(1, int(ttl/time.Second))), concurrency.WithContext(context.WithoutCancel(ctx)))
			if err != nil {
				c.Close()
				return nil, err
			}
			return &etcdLocker{c: c, sess: sess}, nil
		}, func(e *etcdLocker) error { return errors.Join(e.sess.Close(), e.c.Close()) })
	}
}

// zkLocker is go-zookeeper/zk's lock recipe (zk.NewLock: an ephemeral
// sequential node; each waiter watches its predecessor) over a ZooKeeper
// session of its own. The recipe takes no context, so Acquire runs it in a
// goroutine; one given up by ctx releases the lock when it comes, and
// close waits for it.
type zkLocker struct {
	conn *zk.Conn
	wg   sync.WaitGroup
}

func (z *zkLocker) Acquire(ctx context.Context, name string) (bench.Held, error) {
	l := zk.NewLock(z.conn, "/"+name, zk.WorldACL(zk.PermAll))
	done := make(chan error, 1)
	z.wg.Add(1)
	go func() {
		defer z.wg.Done()
		done <- l.Lock()
	}()
	select {
	case err := <-done:
		if err != nil {
			return nil, err
		}
		return heldFunc(func(context.Context) error { return l.Unlock() }), nil
	case <-ctx.Done():
		z.wg.Add(1)
		go func() {
			defer z.wg.Done()
			if err := <-done; err == nil {
				l.Unlock()
			}
		}()
		return nil, ctx.Err()
	}
}

type discardLogger struct{}

func (discardLogger) Printf(string, ...any) {}

func openZK(addr string, ttl time.Duration) func(ctx context.Context, n int) (*lockerSet, error) {
	return func(ctx context.Context, n int) (*lockerSet, error) {
		return openEach(ctx, n, func(ctx context.Context) (*zkLocker, error) {
			conn, events, err := zk.Connect([]string{addr}, ttl, zk.WithLogger(discardLogger{}), zk.WithLogInfo(false))
			if err != nil {
				return nil, err
			}
			// Wait for the session, so that connecting is not measured.
			for {
				select {
				case ev := <-events:
					if ev.State == zk.StateHasSession {
						return &zkLocker{conn: conn}, nil
					}
				case <-ctx.Done():
					conn.Close()
					return nil, ctx.Err()
				case <-time.After(10 * time.Second):
					conn.Close()
					return nil, fmt.Errorf("no ZooKeeper session with %s within 10s", addr)
				}
			}
		}, func(z *zkLocker) error {
			z.conn.Close()
			z.wg.Wait()
			return nil
		})
	}
}

// pgTable is the floor of a PostgreSQL lock: one row per held lock in a
// table, taken by an INSERT that may replace an expired row and given back
// by a DELETE of the owner's row, each its own durable commit; a held lock
// is polled. It shows what one fsync'd commit per operation costs on this
// machine.
type pgTable struct {
	c    *pgx.Conn
	ttl  time.Duration
	poll time.Duration
}

const pgSchema = `CREATE TABLE IF NOT EXISTS bench_locks (
	name text PRIMARY KEY,
	owner text NOT NULL,
	expires_at timestamptz NOT NULL
)`

func (p *pgTable) Acquire(ctx context.Context, name string) (bench.Held, error) {
	owner := randomValue()
	for {
		var got string
		err := p.c.QueryRow(ctx, `INSERT INTO bench_locks (name, owner, expires_at) VALUES ($1, $2, now() + $3 * interval '1 millisecond')
			ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at
			WHERE bench_locks.expires_at < now() RETURNING owner`, name, owner, p.ttl.Milliseconds()).Scan(&got)
		switch {
		case err == nil:
			return heldFunc(func(ctx context.Context) error {
				tag, err := p.c.Exec(ctx, `DELETE FROM bench_locks WHERE name = $1 AND owner = $2`, name, owner)
				if err != nil {
					return err
				}
				if tag.RowsAffected() != 1 {
					return fmt.Errorf("%w: %q expired or taken over", fencer.ErrLeaseLost, name)
				}
				return nil
			}), nil
		case !errors.Is(err, pgx.ErrNoRows):
			return nil, err
		}
		if err := waitCtx(ctx, p.poll); err != nil {
			return nil, err
		}
	}
}

func openPGTable(url string, ttl, poll time.Duration) func(ctx context.Context, n int) (*lockerSet, error) {
	return func(ctx context.Context, n int) (*lockerSet, error) {
		c, err := pgx.Connect(ctx, url)
		if err != nil {
			return nil, err
		}
		_, err = c.Exec(ctx, pgSchema)
		c.Close(context.WithoutCancel(ctx))
		if err != nil {
			return nil, fmt.Errorf("create the lock table: %w", err)
		}
		return openEach(ctx, n, func(ctx context.Context) (*pgTable, error) {
			c, err := pgx.Connect(ctx, url)
			if err != nil {
				return nil, err
			}
			return &pgTable{c: c, ttl: ttl, poll: poll}, nil
		}, func(p *pgTable) error { return p.c.Close(context.Background()) })
	}
}

// openFencer opens fencer's own Lockers: each client its own fencer.Client
// over its own Backend, as `fencer bench` does by default. One lock taken
// and released first (retried for up to 10 s) makes the backend set up what
// it sets up on first use (a table, a script) before many clients race to.
func openFencer(url string, ttl time.Duration) func(ctx context.Context, n int) (*lockerSet, error) {
	return func(ctx context.Context, n int) (*lockerSet, error) {
		if err := waitFor(ctx, nil, 10*time.Second, "taking and releasing one lock", grantCheck(url)); err != nil {
			return nil, err
		}
		set, err := bench.OpenFencer(ctx, url, n, false, &fencer.Options{TTL: ttl})
		if err != nil {
			return nil, err
		}
		return &lockerSet{lockers: set.Lockers, close: set.Close}, nil
	}
}
