package pglock_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/pglock"
)

// None of these tests needs a server: bad input is refused before anything
// is sent.

func TestOpenBadURL(t *testing.T) {
	for _, tc := range []struct {
		name, url, reason string
	}{
		{"Empty", "", "does not start with postgres://"},
		{"NoScheme", "127.0.0.1:5432/app", "does not start with postgres://"},
		{"KeywordValue", "host=127.0.0.1 dbname=app", "keyword=value"},
		{"OtherScheme", "redis://127.0.0.1:6379", `the scheme is "redis"`},
		{"UpperCaseScheme", "POSTGRES://127.0.0.1/app", `the scheme is "POSTGRES"`},
		{"BadPort", "postgres://app:s3cret@127.0.0.1:notaport/app", "port"},
		{"PortOutOfRange", "postgres://app:s3cret@127.0.0.1:99999/app", "port"},
		{"BadSSLMode", "postgresql://app:s3cret@127.0.0.1/app?sslmode=sometimes", "sslmode"},
		{"BadPoolSize", "postgres://127.0.0.1/app?pool_max_conns=none", "pool_max_conns"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := pglock.Open(context.Background(), tc.url)
			if err == nil {
				b.Close()
				t.Fatalf("Open(%q) succeeded", tc.url)
			}
			var inv *fencer.InvalidError
			if !errors.As(err, &inv) || !errors.Is(err, fencer.ErrInvalid) {
				t.Fatalf("Open(%q) = %v (%T), want a *fencer.InvalidError", tc.url, err, err)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.reason) || !strings.Contains(msg, "accepted: postgres://") {
				t.Errorf("Open(%q) = %q; want it to say %q and what is accepted", tc.url, msg, tc.reason)
			}
			if strings.Contains(msg, "s3cret") {
				t.Errorf("the error %q shows the password", msg)
			}
		})
	}
	// The two schemes, with and without the parts pgx defaults.
	for _, url := range []string{
		"postgres://app:s3cret@127.0.0.1:1/app?sslmode=disable",
		"postgresql://127.0.0.1/app",
		"postgres://[::1]:1/app?connect_timeout=2&pool_max_conns=8",
	} {
		b, err := pglock.Open(context.Background(), url)
		if err != nil {
			t.Errorf("Open(%q) = %v", url, err)
			continue
		}
		b.Close()
	}
}

func TestConfigRefused(t *testing.T) {
	const url = "postgres://127.0.0.1:1/app"
	for _, tc := range []struct {
		name   string
		cfg    pglock.Config
		reason string
	}{
		{"NoConnection", pglock.Config{}, "no Pool and no URL"},
		{"TableUpperCase", pglock.Config{URL: url, Table: "Locks"}, "upper-case"},
		{"TableDigitFirst", pglock.Config{URL: url, Table: "1locks"}, "starts with a digit"},
		{"TableDash", pglock.Config{URL: url, Table: "fencer-locks"}, `'-'`},
		{"TableQuote", pglock.Config{URL: url, Table: `locks"; DROP TABLE x; --`}, `'"'`},
		{"TableThreeParts", pglock.Config{URL: url, Table: "db.schema.locks"}, "more than one '.'"},
		{"TableEmptySchema", pglock.Config{URL: url, Table: ".locks"}, "empty part"},
		{"TableEmptyName", pglock.Config{URL: url, Table: "locking."}, "empty part"},
		{"TableNonASCII", pglock.Config{URL: url, Table: "verrouillé"}, "non-ASCII"},
		{"TableTooLong", pglock.Config{URL: url, Table: strings.Repeat("l", 58)}, "58 bytes long"},
		{"NegativeMinBackoff", pglock.Config{URL: url, MinBackoff: -time.Second}, "negative"},
		{"NegativeMaxBackoff", pglock.Config{URL: url, MaxBackoff: -time.Second}, "negative"},
		{"MinAboveMax", pglock.Config{URL: url, MinBackoff: 2 * time.Second, MaxBackoff: time.Second}, "above MaxBackoff"},
		{"BadURL", pglock.Config{URL: "mysql://127.0.0.1/app"}, `the scheme is "mysql"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := pglock.New(context.Background(), tc.cfg)
			if err == nil {
				b.Close()
				t.Fatalf("New(%+v) succeeded", tc.cfg)
			}
			if !errors.Is(err, fencer.ErrInvalid) || !strings.Contains(err.Error(), tc.reason) || !strings.Contains(err.Error(), "accepted") {
				t.Errorf("New(%+v) = %v; want an InvalidError that says %q and what is accepted", tc.cfg, err, tc.reason)
			}
		})
	}
	for _, table := range []string{"fencer_locks", "_locks2", "locking.fencer_locks", strings.Repeat("l", 57)} {
		b, err := pglock.New(context.Background(), pglock.Config{URL: url, Table: table})
		if err != nil {
			t.Errorf("table %q: %v", table, err)
			continue
		}
		b.Close()
	}
}

func TestCallsRefused(t *testing.T) {
	ctx := context.Background()
	b, err := pglock.Open(ctx, "postgres://127.0.0.1:1/app")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if info := b.Info(); info.Kind != "postgres" || info.Guarantee != fencer.Correctness || !info.Tokens || info.LockDelay || !info.SafeTokens() {
		t.Errorf("Info() = %+v", info)
	}
	if _, err := b.Acquire(ctx, fencer.AcquireRequest{Name: "a", TTL: time.Second, LockDelay: time.Second}); !errors.Is(err, fencer.ErrInvalid) {
		t.Errorf("Acquire with a lock delay = %v, want ErrInvalid", err)
	}
	if _, err := b.Acquire(ctx, fencer.AcquireRequest{Name: "a\x00b", TTL: time.Second}); !errors.Is(err, fencer.ErrInvalid) {
		t.Errorf("Acquire of a name with a NUL byte = %v, want ErrInvalid", err)
	}
	foreign := fencer.Grant{Name: "a", Token: 1, TTL: time.Second, Handle: "not ours"}
	if _, err := b.Renew(ctx, foreign); !errors.Is(err, fencer.ErrInvalid) {
		t.Errorf("Renew of a foreign grant = %v, want ErrInvalid", err)
	}
	if err := b.Release(ctx, foreign); !errors.Is(err, fencer.ErrInvalid) {
		t.Errorf("Release of a foreign grant = %v, want ErrInvalid", err)
	}
	b.Close()
	for _, wait := range []bool{false, true} {
		if _, err := b.Acquire(ctx, fencer.AcquireRequest{Name: "a", TTL: time.Second, Wait: wait}); !errors.Is(err, fencer.ErrClosed) {
			t.Errorf("Acquire (wait %v) after Close = %v, want ErrClosed", wait, err)
		}
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}
