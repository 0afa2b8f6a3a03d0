package pglock

import (
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/internal/backoff"
)

// Defaults for the zero fields of Config.
const (
	// DefaultTable is the lock table's name. Its token sequence is
	// DefaultTable+"_token".
	DefaultTable = "fencer_locks"
	// DefaultMinBackoff is the first fallback back-off of a waiting Acquire.
	DefaultMinBackoff = 20 * time.Millisecond
	// DefaultMaxBackoff is the longest fallback back-off of a waiting
	// Acquire.
	DefaultMaxBackoff = time.Second
)

// maxTableLen keeps the derived names within PostgreSQL's 63-byte limit on
// identifiers: the sequence is the table's name plus "_token" (6 bytes).
const maxTableLen = 57

const acceptedTable = "[schema.]table in lower-case letters, digits and '_', each part starting with a letter or '_', " +
	"at most 57 bytes in all, e.g. \"fencer_locks\" or \"locking.fencer_locks\""

// Config configures a Backend. A zero field means its default, as each field
// says; exactly one of Pool and URL is required.
type Config struct {
	// Pool is the connection pool the Backend runs its statements on. The
	// Backend does not close it: whoever made it does, after closing the
	// Backend. The waiting Acquires of a Backend also share one extra
	// connection of their own, made from Pool's connection settings, which
	// LISTENs for releases; it must reach the database directly or through
	// a session-mode pooler (in PgBouncer's transaction mode notifications
	// get lost, and waiters fall back to their back-off).
	//
	// The statements expect READ COMMITTED, PostgreSQL's default isolation
	// level; at a stricter default level they are still correct, but
	// contended acquires fail with serialization errors, and the Backend
	// logs a warning.
	Pool *pgxpool.Pool

	// URL makes the Backend open (and, in Close, close) a pool of its own: a
	// postgres:// or postgresql:// URL as pgx accepts it (see Open). Use
	// either Pool or URL.
	URL string

	// Table is the lock table: one row per held lock. It may be qualified
	// with a schema; unqualified, it is looked up (and created) along the
	// search_path. Its token sequence, Table+"_token", lives in the same
	// schema. Both are created on first use if missing. Releases are
	// announced on the notification channel named after the table's
	// schema-qualified name, such as "public.fencer_locks", however Table
	// spells it. Clients that must exclude each other have to use the same
	// table in the same database. Zero means DefaultTable ("fencer_locks").
	Table string

	// MinBackoff and MaxBackoff bound the fallback back-off of a waiting
	// Acquire. A waiter is normally woken by the release's notification,
	// within about one round trip; the back-off, which starts at
	// MinBackoff, doubles up to MaxBackoff and is jittered down by up to
	// half, is for notifications that get lost (the listening connection
	// is reconnecting) and for a holder that dies without releasing (then
	// the waiter also tries again as soon as the holder's lease runs out by
	// the database's clock). A zero MinBackoff means DefaultMinBackoff
	// (20 ms), or MaxBackoff if that is smaller; a zero MaxBackoff means
	// DefaultMaxBackoff (1 s), or MinBackoff if that is larger. MinBackoff
	// must not be above MaxBackoff.
	MinBackoff time.Duration
	MaxBackoff time.Duration

	// Logger receives warnings about database settings that weaken the
	// guarantee (fsync or synchronous_commit off, asynchronous standbys)
	// and debug messages about the listening connection and errors that a
	// waiting Acquire rides out. Nil discards them.
	Logger *slog.Logger
}

// withDefaults returns cfg with its zero fields set to their defaults, or an
// *fencer.InvalidError naming the field that is wrong.
func (cfg Config) withDefaults() (Config, error) {
	switch {
	case cfg.Pool == nil && cfg.URL == "":
		return cfg, &fencer.InvalidError{Field: "pglock config", Value: "no Pool and no URL",
			Reason: "a connection is required", Accepted: "a *pgxpool.Pool in Pool, or a postgres:// URL in URL"}
	case cfg.Pool != nil && cfg.URL != "":
		return cfg, &fencer.InvalidError{Field: "pglock config URL", Value: redactURL(cfg.URL),
			Reason: "both Pool and URL are set", Accepted: "either a *pgxpool.Pool in Pool or a postgres:// URL in URL, not both"}
	}
	if cfg.Table == "" {
		cfg.Table = DefaultTable
	}
	if _, _, err := parseTable(cfg.Table); err != nil {
		return cfg, err
	}
	def := backoff.Bounds{Min: DefaultMinBackoff, Max: DefaultMaxBackoff}
	bo, err := backoff.Bounds{Min: cfg.MinBackoff, Max: cfg.MaxBackoff}.Fill("pglock", def)
	if err != nil {
		return cfg, err
	}
	cfg.MinBackoff, cfg.MaxBackoff = bo.Min, bo.Max
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg, nil
}

// parseTable splits a valid Config.Table into its schema ("" if none) and
// table, or returns an *fencer.InvalidError.
//
// Names are kept to lower case, though every statement quotes them: an
// operator who types the name unquoted in psql then finds the same table.
func parseTable(s string) (schema, table string, err error) {
	bad := func(reason string) error {
		return &fencer.InvalidError{Field: "pglock table name", Value: s, Reason: reason, Accepted: acceptedTable}
	}
	if len(s) > maxTableLen {
		return "", "", bad("it is " + strconv.Itoa(len(s)) + " bytes long")
	}
	parts := strings.Split(s, ".")
	if len(parts) > 2 {
		return "", "", bad("it has more than one '.'")
	}
	off := 0 // of p in s
	for _, p := range parts {
		if p == "" {
			return "", "", bad("it has an empty part")
		}
		for i := 0; i < len(p); i++ {
			c := p[i]
			switch {
			case c >= 'a' && c <= 'z', c == '_':
			case c >= '0' && c <= '9':
				if i == 0 {
					return "", "", bad(strconv.Quote(p) + " starts with a digit")
				}
			case c >= 'A' && c <= 'Z':
				return "", "", bad("it has upper-case letters, which PostgreSQL folds to lower case in unquoted names")
			case c >= 0x80:
				return "", "", bad("it has a non-ASCII character at byte " + strconv.Itoa(off+i))
			default:
				return "", "", bad("it has the character " + strconv.QuoteRune(rune(c)) + " at byte " + strconv.Itoa(off+i))
			}
		}
		off += len(p) + 1
	}
	if len(parts) == 2 {
		return parts[0], parts[1], nil
	}
	return "", parts[0], nil
}

// names are the SQL names of one lock table's objects, as Config.Table
// spells them.
type names struct {
	config   string // Config.Table
	schema   string // its schema part, "" if none
	relname  string // its table part
	table    string // the table, quoted, e.g. "app"."locks"
	sequence string // its token sequence, e.g. "app"."locks_token"
}

func namesOf(cfgTable string) names {
	schema, table, _ := parseTable(cfgTable)
	qualify := func(name string) string {
		if schema == "" {
			return pgx.Identifier{name}.Sanitize()
		}
		return pgx.Identifier{schema, name}.Sanitize()
	}
	return names{config: cfgTable, schema: schema, relname: table, table: qualify(table), sequence: qualify(table + "_token")}
}
