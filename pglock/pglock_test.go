package pglock_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/internal/testutil"
	"github.com/fencerlock/fencer/internal/testutil/pgtest"
	"github.com/fencerlock/fencer/pglock"
)

// newBackend returns a Backend for cfg, closed when t ends.
func newBackend(t testing.TB, cfg pglock.Config) *pglock.Backend {
	t.Helper()
	b, err := pglock.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// slowFallback is a Config whose waiters never wake by their back-off
// within a test: only a notification, or the holder's expiry, wakes them.
// Its sessions are named app, so that listening can tell them apart.
func slowFallback(url, app string) pglock.Config {
	return pglock.Config{URL: url + "&application_name=" + app, MinBackoff: time.Hour, MaxBackoff: time.Hour}
}

type result struct {
	g   fencer.Grant
	at  time.Time
	err error
}

// acquireAsync starts a waiting Acquire and returns the channel of its
// result.
func acquireAsync(ctx context.Context, b fencer.Backend, name string, ttl time.Duration) <-chan result {
	c := make(chan result, 1)
	go func() {
		g, err := b.Acquire(ctx, fencer.AcquireRequest{Name: name, TTL: ttl, Wait: true})
		c <- result{g, time.Now(), err}
	}()
	return c
}

// markedWaiters counts the locks among names whose row says someone waits.
func markedWaiters(t *testing.T, admin *pgxpool.Pool, names ...string) int {
	t.Helper()
	var n int
	err := admin.QueryRow(context.Background(), `SELECT count(*) FROM fencer_locks WHERE name = ANY($1) AND waiters`, names).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// listening counts the sessions named app that have LISTENed last.
func listening(t *testing.T, admin *pgxpool.Pool, app string) int {
	t.Helper()
	var n int
	err := admin.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND query LIKE 'LISTEN %'`, app).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestWaiting checks how waiting Acquires are woken: by the release's
// notification (with a fallback back-off too long to matter), all through
// one listening connection, and by the holder's expiry by the database's
// clock. The bounds are loose: the mechanism under test takes milliseconds,
// and its absence a minute or an hour.
func TestWaiting(t *testing.T) {
	srv := pgtest.Start(t, nil)
	admin := srv.Pool(t)

	t.Run("NotificationWakesWaiter", func(t *testing.T) {
		ctx := testutil.Context(t, 30*time.Second)
		holder := newBackend(t, pglock.Config{URL: srv.URL()})
		waiter := newBackend(t, slowFallback(srv.URL(), "notification"))
		for i := range 3 {
			name := fmt.Sprintf("wake/%d", i)
			g, err := holder.Acquire(ctx, fencer.AcquireRequest{Name: name, TTL: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			got := acquireAsync(ctx, waiter, name, time.Minute)
			testutil.WaitFor(t, 10*time.Second, "the waiter to mark the lock", func() bool { return markedWaiters(t, admin, name) == 1 })
			// A release before the listener is up would be caught too (by
			// the wake-up of every waiter once it is), but not by the
			// mechanism under test.
			testutil.WaitFor(t, 10*time.Second, "the listener to be up", func() bool { return listening(t, admin, "notification") == 1 })
			released := time.Now()
			if err := holder.Release(ctx, g); err != nil {
				t.Fatal(err)
			}
			r := <-got
			if r.err != nil {
				t.Fatalf("waiter: %v", r.err)
			}
			if d := r.at.Sub(released); d > 5*time.Second {
				t.Errorf("hand-off %d took %v with a one-hour fallback and a one-minute TTL: the release's notification did not wake the waiter", i, d)
			}
			if r.g.Token <= g.Token {
				t.Errorf("waiter's token %v is not above the holder's %v", r.g.Token, g.Token)
			}
			if err := waiter.Release(ctx, r.g); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("OneListeningConnection", func(t *testing.T) {
		const locks = 8
		ctx := testutil.Context(t, 30*time.Second)
		holder := newBackend(t, pglock.Config{URL: srv.URL()})
		waiter := newBackend(t, slowFallback(srv.URL(), "one"))
		var names []string
		var grants []fencer.Grant
		var results []<-chan result
		for i := range locks {
			name := fmt.Sprintf("many/%d", i)
			g, err := holder.Acquire(ctx, fencer.AcquireRequest{Name: name, TTL: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			names, grants = append(names, name), append(grants, g)
			// Two waiters per lock.
			results = append(results, acquireAsync(ctx, waiter, name, time.Minute), acquireAsync(ctx, waiter, name, time.Minute))
		}
		testutil.WaitFor(t, 10*time.Second, "every lock to be marked as waited for", func() bool { return markedWaiters(t, admin, names...) == locks })
		testutil.WaitFor(t, 10*time.Second, "the listener to be up", func() bool { return listening(t, admin, "one") >= 1 })
		time.Sleep(50 * time.Millisecond) // room for more listeners, if there were any
		if n := listening(t, admin, "one"); n != 1 {
			t.Errorf("%d sessions LISTEN for %d waiters of one Backend; want one shared connection", n, 2*locks)
		}
		for _, g := range grants {
			if err := holder.Release(ctx, g); err != nil {
				t.Fatal(err)
			}
		}
		// One waiter of each lock gets it at once; the other gets it when
		// the first releases.
		var wg sync.WaitGroup
		for _, c := range results {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := <-c
				if r.err != nil {
					t.Errorf("waiter: %v", r.err)
					return
				}
				time.Sleep(10 * time.Millisecond)
				if err := waiter.Release(ctx, r.g); err != nil {
					t.Errorf("release: %v", err)
				}
			}()
		}
		wg.Wait()
	})

	t.Run("WaitUntilExpiry", func(t *testing.T) {
		// A holder that dies without releasing: the waiter tries again as
		// soon as the lease runs out by the database's clock.
		const ttl = time.Second
		ctx := testutil.Context(t, 30*time.Second)
		holder := newBackend(t, pglock.Config{URL: srv.URL()})
		waiter := newBackend(t, slowFallback(srv.URL(), "expiry"))
		g, err := holder.Acquire(ctx, fencer.AcquireRequest{Name: "expiry", TTL: ttl})
		if err != nil {
			t.Fatal(err)
		}
		holder.Close()
		r := <-acquireAsync(ctx, waiter, "expiry", ttl)
		if r.err != nil {
			t.Fatal(r.err)
		}
		if d := r.at.Sub(g.Sent); d < ttl-fencer.Drift(ttl) || d > 10*time.Second {
			t.Errorf("the lock was granted again %v after the holder's acquire; its TTL is %v and the fallback one hour", d, ttl)
		}
		if err := waiter.Release(ctx, r.g); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("TriesUseNoTokens", func(t *testing.T) {
		ctx := testutil.Context(t, 30*time.Second)
		b := newBackend(t, pglock.Config{URL: srv.URL()})
		other := newBackend(t, pglock.Config{URL: srv.URL()})
		before := time.Now()
		g, err := b.Acquire(ctx, fencer.AcquireRequest{Name: "thrift", TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		if g.Sent.Before(before) || g.Sent.After(time.Now()) {
			t.Errorf("Grant.Sent %v is not within the Acquire call", g.Sent)
		}
		for range 20 {
			if _, err := other.Acquire(ctx, fencer.AcquireRequest{Name: "thrift", TTL: time.Minute}); !errors.Is(err, fencer.ErrLocked) {
				t.Fatalf("try of a held lock = %v, want ErrLocked", err)
			}
		}
		// A waiter's attempts, too, leave the sequence alone.
		wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		_, err = other.Acquire(wctx, fencer.AcquireRequest{Name: "thrift", TTL: time.Minute, Wait: true})
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("waiting for a held lock until the deadline = %v, want DeadlineExceeded", err)
		}
		if err := b.Release(ctx, g); err != nil {
			t.Fatal(err)
		}
		g2, err := other.Acquire(ctx, fencer.AcquireRequest{Name: "thrift", TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		if g2.Token != g.Token+1 {
			t.Errorf("token after 20 failed tries and a wait is %v, want %v: attempts on a held lock used up sequence values", g2.Token, g.Token+1)
		}
		other.Release(ctx, g2)
	})
}

// TestRestart crashes the database (SIGKILL) and restarts it: grants and
// tokens survive, a lease whose holder is gone still ends by the database's
// clock, and the shared listener reconnects.
func TestRestart(t *testing.T) {
	const ttl = 3 * time.Second
	srv := pgtest.Start(t, nil)
	ctx := testutil.Context(t, time.Minute)
	b1 := open(t, srv.URL())
	defer b1.Close()
	g1, err := b1.Acquire(ctx, fencer.AcquireRequest{Name: "durable", TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	var left float64
	err = srv.Pool(t).QueryRow(ctx, `SELECT extract(epoch FROM expires_at - clock_timestamp()) FROM fencer_locks WHERE name = 'durable'`).Scan(&left)
	if err != nil || left <= 0 || left > ttl.Seconds() {
		t.Fatalf("the database's clock gives the lease %vs to live (%v); want (0, %v]", left, err, ttl.Seconds())
	}

	srv.Restart()
	admin := srv.Pool(t)
	b2 := newBackend(t, slowFallback(srv.URL(), "restart"))
	if _, err := b2.Acquire(ctx, fencer.AcquireRequest{Name: "durable", TTL: ttl}); !errors.Is(err, fencer.ErrLocked) {
		t.Fatalf("after the crash, a try of the lock = %v; want ErrLocked, the grant is durable", err)
	}
	g2, err := b2.Acquire(ctx, fencer.AcquireRequest{Name: "other", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if g2.Token <= g1.Token {
		t.Fatalf("token %v after the crash is not above %v before it", g2.Token, g1.Token)
	}

	// The holder of "durable" stopped renewing; a waiter with a fallback of
	// an hour gets the lock when the database's clock says the lease ended.
	r := <-acquireAsync(ctx, b2, "durable", time.Minute)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if d := r.at.Sub(g1.Sent); d < ttl-fencer.Drift(ttl) {
		t.Errorf("the lock was granted again %v after the first grant; its TTL is %v", d, ttl)
	}
	if r.g.Token <= g2.Token {
		t.Errorf("token %v is not above the previous grant's %v", r.g.Token, g2.Token)
	}
	if _, err := renewRetrying(ctx, b1, g1); !errors.Is(err, fencer.ErrLeaseLost) {
		t.Errorf("the first holder's renewal = %v, want ErrLeaseLost", err)
	}

	// The listener survives a crash: a waiter registered before it is
	// woken by a release after it, though its fallback is an hour and the
	// holder's TTL a minute.
	got := acquireAsync(ctx, b2, "other", time.Minute)
	testutil.WaitFor(t, 10*time.Second, "the waiter to mark the lock", func() bool { return markedWaiters(t, admin, "other") == 1 })
	srv.Restart()
	admin = srv.Pool(t)
	testutil.WaitFor(t, 10*time.Second, "the listener to be back", func() bool { return listening(t, admin, "restart") == 1 })
	released := time.Now()
	if err := releaseRetrying(ctx, b2, g2); err != nil {
		t.Fatal(err)
	}
	r = <-got
	if r.err != nil {
		t.Fatal(r.err)
	}
	if d := r.at.Sub(released); d > 5*time.Second {
		t.Errorf("a waiter was granted the lock %v after its release across a crash: the listener did not come back", d)
	}
	if err := releaseRetrying(ctx, b2, r.g); err != nil {
		t.Fatal(err)
	}
}

// renewRetrying and releaseRetrying ride out the broken pooled connections
// a crash leaves behind.
func renewRetrying(ctx context.Context, b fencer.Backend, g fencer.Grant) (fencer.Grant, error) {
	for {
		ng, err := b.Renew(ctx, g)
		if err == nil || errors.Is(err, fencer.ErrLeaseLost) || ctx.Err() != nil {
			return ng, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func releaseRetrying(ctx context.Context, b fencer.Backend, g fencer.Grant) error {
	for {
		err := b.Release(ctx, g)
		if err == nil || errors.Is(err, fencer.ErrLeaseLost) || ctx.Err() != nil {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSchema: the table is created on first use, also by processes racing
// to do it; a table and sequence made ahead of time work without CREATE
// privileges; a sequence or table that would break tokens is refused.
func TestSchema(t *testing.T) {
	srv := pgtest.Start(t, nil)
	admin := srv.Pool(t)
	ctx := testutil.Context(t, time.Minute)
	exec := func(sql string) {
		t.Helper()
		if _, err := admin.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}

	t.Run("CreateRace", func(t *testing.T) {
		const n = 8
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				b, err := pglock.Open(ctx, srv.URL())
				if err != nil {
					t.Error(err)
					return
				}
				defer b.Close()
				g, err := b.Acquire(ctx, fencer.AcquireRequest{Name: fmt.Sprintf("race/%d", i), TTL: time.Minute})
				if err != nil {
					t.Errorf("backend %d: %v", i, err)
					return
				}
				if err := b.Release(ctx, g); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
	})

	t.Run("OtherSchema", func(t *testing.T) {
		exec(`CREATE SCHEMA locking`)
		b := newBackend(t, pglock.Config{URL: srv.URL(), Table: "locking.locks"})
		g, err := b.Acquire(ctx, fencer.AcquireRequest{Name: "a", TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		var n int
		if err := admin.QueryRow(ctx, `SELECT count(*) FROM locking.locks WHERE name = 'a'`).Scan(&n); err != nil || n != 1 {
			t.Fatalf("the lock is not in locking.locks: %d rows, %v", n, err)
		}
		var last int64
		if err := admin.QueryRow(ctx, `SELECT last_value FROM locking.locks_token`).Scan(&last); err != nil || last != int64(g.Token) {
			t.Fatalf("locking.locks_token is at %d (%v); the grant's token is %v", last, err, g.Token)
		}
		if err := b.Release(ctx, g); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("MadeAheadWithoutCreatePrivilege", func(t *testing.T) {
		// The administrator lets the first Backend create the objects, then
		// grants an application role what it needs and nothing more.
		b := newBackend(t, pglock.Config{URL: srv.URL(), Table: "app_locks"})
		if _, err := b.Acquire(ctx, fencer.AcquireRequest{Name: "setup", TTL: fencer.MinTTL}); err != nil {
			t.Fatal(err)
		}
		exec(`CREATE ROLE app LOGIN`)
		exec(`REVOKE CREATE ON SCHEMA public FROM PUBLIC`)
		exec(`GRANT SELECT, INSERT, UPDATE, DELETE ON app_locks TO app`)
		exec(`GRANT USAGE ON SEQUENCE app_locks_token TO app`)
		app := newBackend(t, pglock.Config{URL: strings.Replace(srv.URL(), "postgres@", "app@", 1), Table: "app_locks"})
		g, err := app.Acquire(ctx, fencer.AcquireRequest{Name: "a", TTL: time.Minute, Wait: true})
		if err != nil {
			t.Fatal(err)
		}
		if g, err = app.Renew(ctx, g); err != nil {
			t.Fatal(err)
		}
		if err := app.Release(ctx, g); err != nil {
			t.Fatal(err)
		}
		// Without the table, the role's first Acquire says what to do.
		other := newBackend(t, pglock.Config{URL: strings.Replace(srv.URL(), "postgres@", "app@", 1), Table: "missing"})
		_, err = other.Acquire(ctx, fencer.AcquireRequest{Name: "a", TTL: time.Minute, Wait: true})
		if err == nil || !strings.Contains(err.Error(), "ahead of time") || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("Acquire without the table or the privilege to create it = %v; want a permission error that says to create the table ahead of time", err)
		}
	})

	t.Run("SpellingsAgree", func(t *testing.T) {
		// "fencer_locks" and "public.fencer_locks" are one table: a release
		// through one spelling wakes a waiter through the other.
		holder := newBackend(t, pglock.Config{URL: srv.URL()})
		cfg := slowFallback(srv.URL(), "spelling")
		cfg.Table = "public.fencer_locks"
		waiter := newBackend(t, cfg)
		g, err := holder.Acquire(ctx, fencer.AcquireRequest{Name: "spelling", TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		got := acquireAsync(ctx, waiter, "spelling", time.Minute)
		testutil.WaitFor(t, 10*time.Second, "the waiter to mark the lock", func() bool { return markedWaiters(t, admin, "spelling") == 1 })
		testutil.WaitFor(t, 10*time.Second, "the listener to be up", func() bool { return listening(t, admin, "spelling") == 1 })
		released := time.Now()
		if err := holder.Release(ctx, g); err != nil {
			t.Fatal(err)
		}
		r := <-got
		if r.err != nil {
			t.Fatal(r.err)
		}
		if d := r.at.Sub(released); d > 5*time.Second {
			t.Errorf("the waiter got the lock %v after the release: the two spellings of the table listen on different channels", d)
		}
		waiter.Release(ctx, r.g)
	})

	t.Run("BrokenSequenceRefused", func(t *testing.T) {
		for _, tc := range []struct{ table, sequence, want string }{
			{"cached", "CACHE 10", "CACHE 10"},
			{"cycling", "MAXVALUE 100 CYCLE", "CYCLE"},
			{"downward", "INCREMENT -1", "INCREMENT -1"},
		} {
			exec(`CREATE SEQUENCE ` + tc.table + `_token ` + tc.sequence)
			exec(`CREATE TABLE ` + tc.table + ` (name text PRIMARY KEY, owner uuid NOT NULL, token bigint NOT NULL, expires_at timestamptz NOT NULL, waiters boolean NOT NULL DEFAULT false)`)
			b := newBackend(t, pglock.Config{URL: srv.URL(), Table: tc.table})
			// A waiting Acquire does not wait out an error that cannot
			// go away by itself.
			_, err := b.Acquire(ctx, fencer.AcquireRequest{Name: "a", TTL: time.Minute, Wait: true})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "accepted") {
				t.Errorf("table %s with a sequence of %s: Acquire = %v; want an error naming %q and what is accepted", tc.table, tc.sequence, err, tc.want)
			}
		}
	})

	t.Run("ForeignTableRefused", func(t *testing.T) {
		exec(`CREATE TABLE foreign_things (id int)`)
		exec(`CREATE SEQUENCE foreign_things_token`)
		b := newBackend(t, pglock.Config{URL: srv.URL(), Table: "foreign_things"})
		_, err := b.Acquire(ctx, fencer.AcquireRequest{Name: "a", TTL: time.Minute})
		if err == nil || !strings.Contains(err.Error(), "not a fencer lock table") {
			t.Errorf("Acquire on a table that is not a lock table = %v", err)
		}
	})
}

// TestTokensNeverGoBackwards delays one acquire statement between the
// moment it draws its token from the sequence and the moment it looks for
// the lock's row (a trigger sleeps there), while another client acquires
// and releases the same lock. Without the per-lock serialization of acquire
// statements, the delayed one would then insert the lower token, after a
// higher one had been granted. With it, the other client's acquire waits
// for the delayed one and finds the lock held. The two clients spell the
// table differently: the serialization must not depend on the spelling.
func TestTokensNeverGoBackwards(t *testing.T) {
	srv := pgtest.Start(t, nil)
	admin := srv.Pool(t)
	ctx := testutil.Context(t, time.Minute)
	fast := newBackend(t, pglock.Config{URL: srv.URL()})
	slow := newBackend(t, pglock.Config{URL: srv.URL() + "&application_name=slowpoke", Table: "public.fencer_locks"})
	// Create the table, then slow down slowpoke's inserts into it.
	g, err := fast.Acquire(ctx, fencer.AcquireRequest{Name: "setup", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	fast.Release(ctx, g)
	for _, sql := range []string{
		`CREATE FUNCTION slowpoke() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF current_setting('application_name') = 'slowpoke' THEN PERFORM pg_sleep(1); END IF;
			RETURN NEW;
		END $$`,
		`CREATE TRIGGER slowpoke BEFORE INSERT ON fencer_locks FOR EACH ROW EXECUTE FUNCTION slowpoke()`,
	} {
		if _, err := admin.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}

	type grant struct {
		who   string
		token fencer.Token
		at    time.Time
	}
	var mu sync.Mutex
	var grants []grant
	record := func(who string, g fencer.Grant) {
		mu.Lock()
		grants = append(grants, grant{who, g.Token, time.Now()})
		mu.Unlock()
	}
	done := make(chan error, 1)
	go func() {
		g, err := slow.Acquire(ctx, fencer.AcquireRequest{Name: "race", TTL: time.Minute})
		if err == nil {
			record("slow", g)
		}
		done <- err
	}()
	time.Sleep(300 * time.Millisecond) // the slow acquire is in its trigger
	g, err = fast.Acquire(ctx, fencer.AcquireRequest{Name: "race", TTL: time.Minute})
	switch {
	case err == nil:
		record("fast", g)
		fast.Release(ctx, g)
	case !errors.Is(err, fencer.ErrLocked):
		t.Fatal(err)
	}
	if err := <-done; err != nil && !errors.Is(err, fencer.ErrLocked) {
		t.Fatal(err)
	}
	for i := 1; i < len(grants); i++ {
		if grants[i].token <= grants[i-1].token {
			t.Errorf("lock granted to %s with token %v after it was granted to %s with token %v: tokens went backwards",
				grants[i].who, grants[i].token, grants[i-1].who, grants[i-1].token)
		}
	}
	if len(grants) == 0 {
		t.Error("nobody got the lock")
	}
}
